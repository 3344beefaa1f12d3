// relive's VS Code extension: the `relive` debug type runs `relive dap` (a Debug Adapter
// speaking DAP on stdin/stdout), so the debug toolbar shows Step Back and Reverse Continue.
'use strict';
const vscode = require('vscode');

function activate(context) {
  context.subscriptions.push(vscode.debug.registerDebugAdapterDescriptorFactory('relive', {
    createDebugAdapterDescriptor(session) {
      const command = vscode.workspace.getConfiguration('relive').get('command') || ['relive'];
      const [program, ...args] = command;
      return new vscode.DebugAdapterExecutable(program, [...args, 'dap']);
    },
  }));
  context.subscriptions.push(vscode.debug.registerDebugConfigurationProvider('relive', {
    resolveDebugConfiguration(folder, config) {
      if (!config.type && !config.request && !config.name) {  // F5 without a launch.json
        return { type: 'relive', request: 'launch', name: 'relive: replay the latest recording',
          stopOnEntry: true };
      }
      return config;
    },
  }));
}

function deactivate() {}

module.exports = { activate, deactivate };

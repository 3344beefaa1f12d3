;;; dap-mode-session.el --- a scripted dap-mode session against `relive dap' -*- lexical-binding: t -*-
;;
;;   RELIVE_TRACE=/tmp/trace RELIVE_SOURCE=$PWD/tests/programs/dap_target.c \
;;   emacs --batch -l editors/emacs/dap-mode-session.el
;;
;; with dap-mode installed (Debian: `apt-get install elpa-dap-mode`, dap-mode 0.7). It does
;; with dap-mode's own functions what a user does on tests/programs/dap_target.c: a
;; breakpoint on `add_score(a);', run to it, continue to its second hit, step back a line,
;; reverse-continue to the first hit, a data breakpoint on `score' (dap-mode has no command
;; for those: `dap-request'), continue to both writes, reverse-continue to the last, run to
;; the end, disconnect.  dap-mode has no step-back or reverse-continue command either:
;; `relive-step-back' and `relive-reverse-continue' below send them with `dap--step', as
;; dap-next does for "next".  Prints one line per stop; exits 0 if all were as expected.
(require 'dap-mode)
(setq dap-auto-configure-features nil)

(defun relive-step-back ()
  "One source line back, over calls (DAP stepBack)."
  (interactive)
  (dap--step "stepBack" (dap--cur-session-or-die)))

(defun relive-reverse-continue ()
  "Back to the previous breakpoint or data breakpoint hit (DAP reverseContinue)."
  (interactive)
  (dap--step "reverseContinue" (dap--cur-session-or-die)))

(defvar relive--stops 0)
(defvar relive--failures 0)
(add-hook 'dap-stopped-hook (lambda (_session) (setq relive--stops (1+ relive--stops))))

(defun relive--wait-stop (what want-line)
  "Wait for the next stop; print where dap-mode shows it (WHAT says why)."
  (let ((n relive--stops) (deadline (+ (float-time) 120)))
    (while (and (= n relive--stops) (< (float-time) deadline))
      (accept-process-output nil 0.02))
    (let ((deadline (+ (float-time) 30)) frame)
      (while (and (not (setq frame (dap--debug-session-active-frame (dap--cur-session))))
                  (< (float-time) deadline))
        (accept-process-output nil 0.02))
      (let* ((line (and frame (gethash "line" frame)))
             (ok (and (> relive--stops n) (or (null want-line) (equal line want-line)))))
        (unless ok (setq relive--failures (1+ relive--failures)))
        (princ (format "STOP %s:%s  (%s)%s\n" (and frame (gethash "name" frame)) line what
                       (if ok "" "  UNEXPECTED")))))))

(defun relive--line-of (text)
  (with-current-buffer (find-file-noselect (getenv "RELIVE_SOURCE"))
    (goto-char (point-min))
    (search-forward text)
    (line-number-at-pos)))

(let* ((add (relive--line-of "add_score(a);"))
       (score (relive--line-of "score += points;"))
       (source (find-file (getenv "RELIVE_SOURCE"))))
  (with-current-buffer source
    (goto-char (point-min))
    (forward-line (1- add))
    (dap-breakpoint-add))
  (dap-start-debugging-noexpand
   (list :type "relive" :request "launch" :name "relive" :trace (getenv "RELIVE_TRACE")
         :dap-server-path (list (or (getenv "RELIVE_PYTHON") "python3") "-m" "relive" "dap")))
  (relive--wait-stop "run to the breakpoint" add)
  (dap-continue (dap--cur-session) (dap--debug-session-thread-id (dap--cur-session)))
  (relive--wait-stop "continue: its second hit" add)
  (relive-step-back)
  (relive--wait-stop "step back one line" (1- add))
  (relive-reverse-continue)
  (relive--wait-stop "reverse-continue to the breakpoint" add)
  (dap-breakpoint-delete-all)
  (let* ((session (dap--cur-session))
         (info (dap-request session "dataBreakpointInfo" :name "score")))
    (dap-request session "setDataBreakpoints"
                 :breakpoints (vector (list :dataId (gethash "dataId" info))))
    (dap-continue session (dap--debug-session-thread-id session))
    (relive--wait-stop "continue to the first write of score" (1+ score))
    (dap-continue session (dap--debug-session-thread-id session))
    (relive--wait-stop "continue to the second write" (1+ score))
    (dap-next session)
    (relive--wait-stop "step over" nil)
    (relive-reverse-continue)
    (relive--wait-stop "reverse-continue to the data breakpoint" score)
    (dap-request session "setDataBreakpoints" :breakpoints [])
    (dap-continue session (dap--debug-session-thread-id session))
    (relive--wait-stop "run to the end" nil)
    (dap-disconnect session)
    (let ((deadline (+ (float-time) 20)))
      (while (and (dap--session-running session) (< (float-time) deadline))
        (accept-process-output nil 0.05)))))
(princ (if (zerop relive--failures) "ALL STOPS AS EXPECTED\n"
         (format "%d UNEXPECTED\n" relive--failures)))
(kill-emacs (if (zerop relive--failures) 0 1))

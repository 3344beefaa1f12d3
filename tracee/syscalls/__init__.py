"""What relive knows about each syscall, below the recorder and the replayer.

  rules      the vocabulary of an entry (size rules, blocking rules, how each side treats it)
  commands   calls multiplexed by an argument: fcntl, ioctl, futex, flock, wait, open flags
  catalogue  the table: one entry per syscall with every fact about it
  outputs    where a call wrote tracee memory (the size rules' evaluator, msghdr & co.)
  queries    every set of syscalls other parts use, derived from the table, and the decision
             "may this call wait for another task?" from its arguments
"""

/* fork_shared_memory.c - two processes sharing a MAP_SHARED|MAP_ANONYMOUS page.
 * The child increments a counter 100000 times and sets a flag; the parent spins
 * (no syscalls) until it sees the flag, then reaps the child and prints both.
 * Under relive the spinning parent must be preempted so the child can run, and
 * the replay must interleave the two processes the same way.  Prints
 * "counter 100000 flag 42".  Exit 0. */
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void){
  volatile long *c = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0);
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) { for (int i = 0; i < 100000; i++) c[0]++; c[1] = 42; _exit(0); }
  while (c[1] != 42) ;  /* spin until the child is done */
  waitpid(p, 0, 0);
  printf("counter %ld flag %ld\n", c[0], c[1]);
  return 0;
}

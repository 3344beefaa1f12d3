/* spin_after_syscall.c - a thread that makes a simple syscall (getppid) and then spins on a
 * flag, while the main thread sleeps 100 ms in the kernel and then sets the flag.  Under a
 * recorder that runs one thread at a time, this ends only if the spinning thread is
 * preempted once main's sleep is over; the spinner's last syscalls are the kind the
 * compiled loop records, so the loop may be what sees main wake up.  Prints what each
 * thread saw.  Deterministic.  Exit status: 0, or 1 on setup failure. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int flag;

static void *spinner(void *arg)
{
    (void)arg;
    pid_t parent = getppid();
    while (!__atomic_load_n(&flag, __ATOMIC_ACQUIRE))
        ;
    printf("spinner saw the flag (parent %s)\n", parent > 0 ? "known" : "unknown");
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, spinner, NULL) != 0)
        return 1;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    puts("done");
    return 0;
}

/* A handled SIGCONT wakes a thread out of pselect6 (as gpg-agent wakes its main loop): sent
 * by raise(), by another thread, and by a child process. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t woken;
static pthread_t main_thread;

static void on_cont(int sig) { (void)sig; woken++; }

static void *waker(void *arg) {
    (void)arg;
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pthread_kill(main_thread, SIGCONT);
    return NULL;
}

static int wait_for_wakeup(void) {
    sigset_t empty;
    sigemptyset(&empty);
    struct timespec limit = {5, 0};
    return pselect(0, NULL, NULL, NULL, &limit, &empty);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_cont;
    sigaction(SIGCONT, &sa, NULL);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGCONT);
    sigprocmask(SIG_BLOCK, &block, NULL);  /* delivered only inside pselect */

    raise(SIGCONT);
    int r = wait_for_wakeup();
    printf("raise: pselect %d (%s), woken %d\n", r, r < 0 ? strerror(errno) : "-", (int)woken);

    main_thread = pthread_self();
    pthread_t t;
    pthread_create(&t, NULL, waker, NULL);
    r = wait_for_wakeup();
    pthread_join(t, NULL);
    printf("thread: pselect %d (%s), woken %d\n", r, r < 0 ? strerror(errno) : "-", (int)woken);

    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
        kill(parent, SIGCONT);
        _exit(0);
    }
    r = wait_for_wakeup();
    waitpid(child, NULL, 0);
    printf("child: pselect %d (%s), woken %d\n", r, r < 0 ? strerror(errno) : "-", (int)woken);
    return 0;
}

/* epoll_timers.c - an epoll_wait loop over an eventfd, a periodic 20 ms
 * timerfd and one end of a socketpair.  The eventfd is signalled up front;
 * handling it writes to the socketpair; each timer expiry is read and its
 * expiration count printed (after the first expiry the loop sleeps 45 ms so
 * the next count is normally 2).  Prints the event order, the timerfd
 * expiration counts and the elapsed microseconds at each event, which vary
 * per run.  Stops after 3 timer events.
 * Exit status: 0, or 8 on failure. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define FAIL(what) do { perror(what); return 8; } while (0)

static struct timespec start;

static long elapsed_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start.tv_sec) * 1000000L +
           (now.tv_nsec - start.tv_nsec) / 1000L;
}

int main(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);

    int efd = eventfd(0, EFD_NONBLOCK);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    int sv[2];
    if (efd < 0 || tfd < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        FAIL("setup");
    int ep = epoll_create1(0);
    if (ep < 0)
        FAIL("epoll_create1");

    struct epoll_event ev;
    int fds[3] = { efd, tfd, sv[1] };
    for (int i = 0; i < 3; i++) {
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN;
        ev.data.fd = fds[i];
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0)
            FAIL("epoll_ctl");
    }

    struct itimerspec its = {
        .it_interval = { 0, 20 * 1000 * 1000 },
        .it_value = { 0, 20 * 1000 * 1000 },
    };
    if (timerfd_settime(tfd, 0, &its, NULL) != 0)
        FAIL("timerfd_settime");

    uint64_t one = 7;
    if (write(efd, &one, sizeof one) != sizeof one)
        FAIL("eventfd write");

    int timer_events = 0, step = 0;
    uint64_t total_expirations = 0;
    while (timer_events < 3) {
        struct epoll_event evs[4];
        int n = epoll_wait(ep, evs, 4, 1000);
        if (n < 0)
            FAIL("epoll_wait");
        if (n == 0) {
            printf("epoll_wait timed out\n");
            return 8;
        }
        printf("epoll_wait #%d returned %d at +%ld us\n", step++, n, elapsed_us());
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == efd) {
                uint64_t v;
                if (read(efd, &v, sizeof v) != sizeof v)
                    FAIL("eventfd read");
                printf("  eventfd: value %llu\n", (unsigned long long)v);
                if (write(sv[0], "ping", 4) != 4)
                    FAIL("socket write");
            } else if (fd == sv[1]) {
                char buf[16] = { 0 };
                ssize_t r = read(sv[1], buf, sizeof buf - 1);
                printf("  socket: %zd bytes '%s'\n", r, buf);
            } else if (fd == tfd) {
                uint64_t exp;
                if (read(tfd, &exp, sizeof exp) != sizeof exp)
                    FAIL("timerfd read");
                total_expirations += exp;
                timer_events++;
                printf("  timerfd: expirations %llu\n", (unsigned long long)exp);
                if (timer_events == 1) {
                    struct timespec nap = { 0, 45 * 1000 * 1000 };
                    nanosleep(&nap, NULL);
                }
            }
        }
    }
    printf("timer events: %d, total expirations: %llu, elapsed: %ld us\n",
           timer_events, (unsigned long long)total_expirations, elapsed_us());
    close(ep);
    close(efd);
    close(tfd);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

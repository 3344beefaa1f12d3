/* What a program sees of its CPUs: sched_getaffinity, getcpu, Cpus_allowed in its status
 * file; sched_setaffinity in a thread (its own set only), in the main thread (an invalid set
 * fails with EINVAL), and a forked child inheriting the set. Under relive the output must be
 * the native one (relive pins the program to one CPU but shows it the CPUs it has). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *who)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) { perror("sched_getaffinity"); exit(1); }
    printf("%s: %d cpus:", who, CPU_COUNT(&set));
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) printf(" %d", c);
    unsigned cpu = 99;
    getcpu(&cpu, NULL);
    printf(" getcpu-in-set=%d\n", CPU_ISSET(cpu, &set) ? 1 : 0);
}

static void status(const char *who)
{
    FILE *f = fopen("/proc/thread-self/status", "r");
    char line[256];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "Cpus_allowed", 12)) printf("%s %s", who, line);
    fclose(f);
}

static int last_cpu(void)
{
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &set)) last = c;
    return last;
}

static void *thread(void *arg)
{
    (void)arg;
    show("thread before");
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    printf("thread set {0}: %d\n", sched_setaffinity(0, sizeof one, &one));
    show("thread after");
    status("thread");
    return NULL;
}

int main(void)
{
    show("main");
    status("main");
    int last = last_cpu();
    pthread_t t;
    pthread_create(&t, NULL, thread, NULL);
    pthread_join(t, NULL);
    show("main after thread");
    cpu_set_t bad;
    CPU_ZERO(&bad);
    CPU_SET(1000, &bad);
    printf("main set {1000}: %d\n", sched_setaffinity(0, sizeof bad, &bad));
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    printf("main set {last}: %d\n", sched_setaffinity(0, sizeof one, &one));
    show("main");
    status("main");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        show("child");
        status("child");
        return 0;
    }
    waitpid(pid, NULL, 0);
    return 0;
}

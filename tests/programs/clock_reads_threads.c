/* Clock reads in two threads with mutex hand-offs: the recorder answers each read at its
   seccomp stop in its multi-thread loop too (tests/test_seccomp_record.py). Prints a digest
   of what it read; stderr: its voluntary context switches (each ptrace stop is one). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long shared_mix;
static long n;

static void *reader(void *arg)
{
    struct timespec ts, prev = {0, 0};
    long back = 0;
    unsigned long long mix = 0;
    for (long i = 0; i < n; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ts.tv_sec < prev.tv_sec || (ts.tv_sec == prev.tv_sec && ts.tv_nsec < prev.tv_nsec))
            back++;
        prev = ts;
        mix = mix * 31 + (unsigned long long)ts.tv_nsec;
        if (i % 16 == 0) {
            pthread_mutex_lock(&mu);
            shared_mix = shared_mix * 7 + mix + (unsigned long long)(long)arg;
            pthread_mutex_unlock(&mu);
        }
        if (i % 100 == 0) {
            struct timeval tv;
            gettimeofday(&tv, NULL);
            mix += (unsigned long long)tv.tv_usec + (unsigned long long)time(NULL);
        }
    }
    return (void *)back;
}

int main(int argc, char **argv)
{
    n = argc > 1 ? atol(argv[1]) : 10000;
    pthread_t t;
    pthread_create(&t, NULL, reader, (void *)1L);
    void *b1 = reader((void *)2L), *b2;
    pthread_join(t, &b2);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("back %ld %ld mix %llx\n", (long)b1, (long)b2, shared_mix);
    fprintf(stderr, "stops %ld\n", ru.ru_nvcsw);
    return 0;
}

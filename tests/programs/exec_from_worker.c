/* exec_from_worker.c - a thread other than the main one calls execve: refused at record time
 * (the kernel would give it the main thread's id). */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static char **args;

static void *worker(void *arg)
{
    execl("/proc/self/exe", args[0], "after", (char *)NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("after exec\n");
        return 4;
    }
    args = argv;
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    return 1;
}

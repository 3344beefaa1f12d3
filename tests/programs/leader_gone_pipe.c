/* The leader leaves by pthread_exit; then one thread reads a pipe that another thread
   writes later: the read must wait for the writer (it may block), and every line printed
   by the threads is output. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int fds[2];

static void *reader(void *arg) {
    (void)arg;
    usleep(20000);  /* the leader is gone by now */
    for (int i = 0; i < 5; i++) {
        char c;
        if (read(fds[0], &c, 1) != 1)
            exit(2);
        printf("read %c\n", c);
        fflush(stdout);
    }
    return 0;
}

static void *writer(void *arg) {
    (void)arg;
    usleep(40000);
    for (int i = 0; i < 5; i++) {
        usleep(1000);
        char c = (char)('a' + i);
        if (write(fds[1], &c, 1) != 1)
            exit(3);
    }
    return 0;
}

int main(void) {
    pthread_t r, w;
    if (pipe(fds) != 0)
        return 1;
    pthread_create(&r, 0, reader, 0);
    pthread_create(&w, 0, writer, 0);
    pthread_exit(0);
}

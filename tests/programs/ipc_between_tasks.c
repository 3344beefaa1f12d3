/* Kernel IPC objects between two recorded tasks (tests/test_ipc.py).
 *
 * usage: ipc_between_tasks MODE [proc|thread]
 *   mq       a POSIX message queue: the waiter blocks in mq_receive while the other task
 *            sends 0.2 s later (twice, the second with a timeout); attributes, O_NONBLOCK
 *   mqnotify mq_notify with SIGEV_THREAD (glibc's helper thread and netlink socket) and
 *            with SIGEV_SIGNAL
 *   sem      SysV semaphores: a ping-pong of 5 rounds (semop, semtimedop), GETALL, IPC_STAT
 *   msg      SysV message queue: msgrcv waits for a msgsnd made 0.2 s later; IPC_STAT
 *   vmread   process_vm_readv of a child's memory (its heap and stack, into 2 iovecs)
 *   vmwrite  process_vm_writev into a child that is recorded too, and into itself
 *   uffd     userfaultfd, with the fallback a program takes when it is unavailable
 * Everything printed is what a user would compare between the recording and the replay.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int threaded;
static char qname[64];

static void die(const char *what) { perror(what); exit(1); }

static void pause_02(void) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* Run `fn` in the other task (a child process or a thread) and wait for it. */
typedef void *(*body_t)(void *);
static pthread_t other_thread;
static pid_t other_pid;

static void start_other(body_t fn) {
    if (threaded) {
        if (pthread_create(&other_thread, NULL, fn, NULL)) die("pthread_create");
        return;
    }
    other_pid = fork();
    if (other_pid < 0) die("fork");
    if (other_pid == 0) { fn(NULL); _exit(0); }
}

static void join_other(void) {
    if (threaded) { pthread_join(other_thread, NULL); return; }
    int status;
    if (waitpid(other_pid, &status, 0) < 0) die("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status)) { fprintf(stderr, "other failed\n"); exit(1); }
}

/* ---- POSIX message queues ------------------------------------------------------------- */

static void *mq_sender(void *unused) {
    (void)unused;
    mqd_t q = mq_open(qname, O_WRONLY);
    if (q == (mqd_t)-1) die("mq_open sender");
    pause_02();
    if (mq_send(q, "first message", 14, 7)) die("mq_send");
    pause_02();
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    if (mq_timedsend(q, "second, timed", 14, 3, &until)) die("mq_timedsend");
    mq_close(q);
    return NULL;
}

static int mode_mq(void) {
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
    mqd_t q = mq_open(qname, O_RDONLY | O_CREAT | O_EXCL, 0600, &attr);
    if (q == (mqd_t)-1) die("mq_open");
    start_other(mq_sender);
    char buf[64];
    unsigned prio = 0;
    ssize_t n = mq_receive(q, buf, sizeof buf, &prio);   /* waits 0.2 s for the other task */
    if (n < 0) die("mq_receive");
    printf("received %zd bytes \"%s\" priority %u\n", n, buf, prio);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    memset(buf, 0, sizeof buf);
    n = mq_timedreceive(q, buf, sizeof buf, NULL, &until);
    if (n < 0) die("mq_timedreceive");
    printf("received %zd bytes \"%s\"\n", n, buf);
    join_other();
    struct mq_attr now, old;
    if (mq_getattr(q, &now)) die("mq_getattr");
    printf("maxmsg %ld msgsize %ld curmsgs %ld flags %#lx\n", now.mq_maxmsg, now.mq_msgsize,
           now.mq_curmsgs, now.mq_flags);
    struct mq_attr nonblock = {.mq_flags = O_NONBLOCK};
    if (mq_setattr(q, &nonblock, &old)) die("mq_setattr");
    n = mq_receive(q, buf, sizeof buf, NULL);            /* empty and O_NONBLOCK: EAGAIN */
    printf("empty queue: %s (old flags %#lx)\n", n < 0 ? strerror(errno) : "a message?",
           old.mq_flags);
    mq_close(q);
    if (mq_unlink(qname)) die("mq_unlink");
    printf("unlinked: %s\n", mq_open(qname, O_RDONLY) == (mqd_t)-1 ? strerror(errno) : "no");
    return 0;
}

static volatile sig_atomic_t notified_by_signal;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int notified_thread;

static void on_notify(union sigval v) {
    pthread_mutex_lock(&lock);
    notified_thread = v.sival_int;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

static void on_signal(int sig) { (void)sig; notified_by_signal = 1; }

static int mode_mqnotify(void) {
    struct mq_attr attr = {.mq_maxmsg = 4, .mq_msgsize = 64};
    mqd_t q = mq_open(qname, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (q == (mqd_t)-1) die("mq_open");
    mq_unlink(qname);
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD, .sigev_notify_function = on_notify};
    ev.sigev_value.sival_int = 42;
    if (mq_notify(q, &ev)) die("mq_notify SIGEV_THREAD");
    if (mq_send(q, "wake", 5, 1)) die("mq_send");
    pthread_mutex_lock(&lock);
    while (!notified_thread) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    printf("thread notified with %d\n", notified_thread);
    char buf[64];
    mq_receive(q, buf, sizeof buf, NULL);
    signal(SIGUSR1, on_signal);
    ev = (struct sigevent){.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1};
    if (mq_notify(q, &ev)) die("mq_notify SIGEV_SIGNAL");
    if (mq_send(q, "ring", 5, 1)) die("mq_send");
    while (!notified_by_signal) pause_02();
    printf("signal notified, %zd bytes waiting\n", mq_receive(q, buf, sizeof buf, NULL));
    return 0;
}

/* ---- SysV semaphores and message queues ----------------------------------------------- */

static int semid, msqid;

static void sem_step(int num, int delta, int timed) {
    struct sembuf op = {.sem_num = num, .sem_op = delta, .sem_flg = 0};
    struct timespec five = {5, 0};
    int r = timed ? semtimedop(semid, &op, 1, &five) : semop(semid, &op, 1);
    if (r) die("semop");
}

static void *sem_child(void *unused) {
    (void)unused;
    pause_02();
    for (int i = 0; i < 5; i++) {
        sem_step(0, -1, i & 1);          /* wait for ping */
        printf("  pong %d\n", i);
        fflush(stdout);
        sem_step(1, 1, 0);               /* pong */
    }
    return NULL;
}

static int mode_sem(void) {
    semid = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
    if (semid < 0) die("semget");
    start_other(sem_child);
    for (int i = 0; i < 5; i++) {
        printf("ping %d\n", i);
        fflush(stdout);
        sem_step(0, 1, 0);
        sem_step(1, -1, !(i & 1));       /* waits for the other task */
    }
    join_other();
    unsigned short vals[2] = {9, 9};
    union { int val; struct semid_ds *buf; unsigned short *array; } arg;
    arg.array = vals;
    if (semctl(semid, 0, GETALL, arg)) die("GETALL");
    struct semid_ds ds;
    arg.buf = &ds;
    if (semctl(semid, 0, IPC_STAT, arg)) die("IPC_STAT");
    printf("values %u %u, %lu semaphores, last op on 1 by %s\n", vals[0], vals[1],
           (unsigned long)ds.sem_nsems,
           semctl(semid, 1, GETPID) == getpid() ? "this one" : "another");
    struct seminfo info;
    arg.buf = (struct semid_ds *)&info;
    printf("SEM_INFO: %s\n", semctl(semid, 0, SEM_INFO, arg) >= 0 && info.semmsl > 0 ? "ok"
           : strerror(errno));
    if (semctl(semid, 0, IPC_RMID)) die("IPC_RMID");
    return 0;
}

struct message { long mtype; char mtext[48]; };

static void *msg_child(void *unused) {
    (void)unused;
    pause_02();
    struct message m = {.mtype = 2, .mtext = "sent after 0.2 s"};
    if (msgsnd(msqid, &m, strlen(m.mtext) + 1, 0)) die("msgsnd");
    struct message reply;
    ssize_t n = msgrcv(msqid, &reply, sizeof reply.mtext, 3, 0);   /* waits for the reply */
    if (n < 0) die("msgrcv child");
    printf("  other got type %ld \"%s\"\n", reply.mtype, reply.mtext);
    return NULL;
}

static int mode_msg(void) {
    msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
    if (msqid < 0) die("msgget");
    struct message m;
    memset(&m, 0, sizeof m);
    printf("nothing yet: %s\n",
           msgrcv(msqid, &m, sizeof m.mtext, 0, IPC_NOWAIT) < 0 ? strerror(errno) : "?");
    start_other(msg_child);
    ssize_t n = msgrcv(msqid, &m, sizeof m.mtext, 0, 0);   /* waits 0.2 s for the other */
    if (n < 0) die("msgrcv");
    printf("got %zd bytes of type %ld: \"%s\"\n", n, m.mtype, m.mtext);
    pause_02();
    struct message reply = {.mtype = 3, .mtext = "the reply"};
    if (msgsnd(msqid, &reply, 10, IPC_NOWAIT)) die("msgsnd reply");
    join_other();
    struct msqid_ds ds;
    if (msgctl(msqid, IPC_STAT, &ds)) die("msgctl IPC_STAT");
    printf("queue: %lu messages, %lu bytes, mode %o, last sender %s\n",
           (unsigned long)ds.msg_qnum, (unsigned long)ds.__msg_cbytes, ds.msg_perm.mode & 0777,
           ds.msg_lspid == getpid() ? "this one" : "another");
    if (msgctl(msqid, IPC_RMID, NULL)) die("msgctl IPC_RMID");
    return 0;
}

/* ---- another process's memory --------------------------------------------------------- */

static int mode_vm(int writing) {
    int go[2], done[2];
    if (pipe(go) || pipe(done)) die("pipe");
    char *heap = malloc(64);
    strcpy(heap, "the child's heap");
    char stack[32] = "parent's own stack";
    pid_t child = fork();
    if (child == 0) {
        strcpy(heap, "changed in the child's heap");
        strcpy(stack, "child's stack");
        if (write(go[1], "g", 1) != 1) _exit(1);
        char c;
        if (read(done[0], &c, 1) != 1) _exit(1);
        printf("child sees \"%s\"\n", heap);
        _exit(0);
    }
    char c;
    if (read(go[0], &c, 1) != 1) die("read");
    if (writing) {
        char text[] = "written by the parent";
        struct iovec local = {text, sizeof text}, remote = {heap, sizeof text};
        ssize_t n = process_vm_writev(child, &local, 1, &remote, 1, 0);
        printf("process_vm_writev: %zd\n", n);
        char own[32] = "untouched";
        struct iovec mine = {own, 8};
        local.iov_len = 8;
        n = process_vm_writev(getpid(), &local, 1, &mine, 1, 0);    /* into itself */
        printf("into itself: %zd \"%s\"\n", n, own);
    } else {
        char a[10] = {0}, b[64] = {0};
        struct iovec local[2] = {{a, 9}, {b, 40}};
        struct iovec remote[2] = {{heap, 28}, {stack, 14}};
        ssize_t n = process_vm_readv(child, local, 2, remote, 2, 0);
        if (n < 0) die("process_vm_readv");
        printf("read %zd bytes: \"%s\" + \"%s\" + \"%s\"\n", n, a, b, b + 19);
        printf("own copy still \"%s\"\n", heap);
    }
    if (write(done[1], "d", 1) != 1) die("write");
    int status;
    waitpid(child, &status, 0);
    return 0;
}

/* ---- userfaultfd ---------------------------------------------------------------------- */

static int mode_uffd(void) {
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        printf("userfaultfd: %s; falling back to reading the pages eagerly\n", strerror(errno));
        char *page = malloc(4096);
        memset(page, 'x', 4096);
        printf("fallback read %d pages\n", page[4095] == 'x');
        return 0;
    }
    printf("userfaultfd: descriptor %ld\n", fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s MODE [proc|thread]\n", argv[0]); return 2; }
    threaded = argc > 2 && !strcmp(argv[2], "thread");
    snprintf(qname, sizeof qname, "/relive-test-%d", getpid());
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(argv[1], "mq")) return mode_mq();
    if (!strcmp(argv[1], "mqnotify")) return mode_mqnotify();
    if (!strcmp(argv[1], "sem")) return mode_sem();
    if (!strcmp(argv[1], "msg")) return mode_msg();
    if (!strcmp(argv[1], "vmread")) return mode_vm(0);
    if (!strcmp(argv[1], "vmwrite")) return mode_vm(1);
    if (!strcmp(argv[1], "uffd")) return mode_uffd();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}

/* gdb_target.c - a small program to debug under gdb, live and replayed: globals changed in
 * a helper (watchpoints), a recursive function (bt, finish), a leaf returning a value
 * (finish prints "Value returned"), a failing open (errno), and library calls. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int counter = 0;
long history[8];
char message[32] = "relive";

static int square(int x)
{
    int result = x * x;
    return result;
}

static void bump(int by)
{
    counter += by;
    history[counter % 8] = counter;
}

static int factorial(int n)
{
    if (n <= 1)
        return 1;
    return n * factorial(n - 1);
}

int main(void)
{
    int total = 0;
    for (int i = 0; i < 5; i++) {
        bump(i + 1);
        total += square(i);
    }
    int fd = open("/nonexistent/relive", O_RDONLY);
    int saved_errno = errno;
    printf("open=%d errno=%d\n", fd, saved_errno);
    int fact = factorial(5);
    size_t len = strlen(message);
    printf("total=%d counter=%d fact=%d len=%zu\n", total, counter, fact, len);
    printf("pid=%d\n", getpid());
    return 0;
}

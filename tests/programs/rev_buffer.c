/* rev_buffer.c - read()s a file into a buffer that held other bytes before, twice, so that
 * reversing over each read() must bring the earlier contents back: the kernel's writes into
 * the program's memory are undone like the program's own.  Between main and the end of the
 * second read it calls nothing in libc but open() and read(), whose wrappers use no SSE
 * registers (gdb's `record full`, the oracle, cannot undo SSE register writes on this
 * kernel: see tests/test_reverse.py). */
#include <fcntl.h>
#include <unistd.h>

char buffer[32] = "before the read";
int total;

static int sum(const char *p, int n)
{
    int s = 0;
    for (int i = 0; i < n; i++)
        s += p[i];
    return s;
}

int main(int argc, char **argv)
{
    int fd = open(argc > 1 ? argv[1] : "/dev/null", O_RDONLY);
    int n = read(fd, buffer, 10);
    total = sum(buffer, n);
    n = read(fd, buffer + 4, 4);
    total += sum(buffer, 16);
    close(fd);
    return total == 0;
}

/* shared_readonly_map.c - maps a file MAP_SHARED and PROT_READ (as LMDB maps its database),
 * then changes it only through the descriptor (pwrite, twice, the second across a page
 * boundary) and prints what the mapping shows after each. Exit status: 0. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/readonly_map.bin", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return 1;
    static char pages[8192];
    memset(pages, 'a', sizeof pages);
    if (pwrite(fd, pages, sizeof pages, 0) != sizeof pages)
        return 1;
    const char *m = mmap(0, sizeof pages, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 1;
    if (pwrite(fd, "hello", 5, 0) != 5)
        return 1;
    printf("%.7s\n", m);
    if (pwrite(fd, "across", 6, 4093) != 6)
        return 1;
    printf("%.7s|%.5s\n", m + 4090, m + 4096);
    unlink(path);
    return 0;
}

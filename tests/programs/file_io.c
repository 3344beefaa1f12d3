/* file_io.c - creates a temp file with mkstemp in argv[1] (default /tmp),
 * then write, lseek, read, pread, pwrite, fstat, stat, reads it back and
 * unlinks it.  Prints the (random) file name and mtime, which differ per run,
 * the inode number (differs when the file system does not reuse it), plus
 * sizes and contents, which do not.
 * Exit status: 0 on success, 3 on any I/O failure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL(what) do { perror(what); return 3; } while (0)

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[4096];
    char buf[64];
    struct stat st;

    snprintf(path, sizeof path, "%s/relive-fileio-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        FAIL("mkstemp");
    printf("name: %s\n", strrchr(path, '/') + 1);

    const char *msg = "0123456789abcdefghij";
    if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
        FAIL("write");

    off_t pos = lseek(fd, 5, SEEK_SET);
    printf("lseek: %lld\n", (long long)pos);
    memset(buf, 0, sizeof buf);
    if (read(fd, buf, 4) != 4)
        FAIL("read");
    printf("read@5: %s\n", buf);

    memset(buf, 0, sizeof buf);
    if (pread(fd, buf, 6, 10) != 6)
        FAIL("pread");
    printf("pread@10: %s\n", buf);

    if (pwrite(fd, "XYZ", 3, 18) != 3)   /* overwrites "ij", extends by 1 */
        FAIL("pwrite");
    printf("offset after pwrite: %lld\n", (long long)lseek(fd, 0, SEEK_CUR));

    if (fstat(fd, &st) != 0)
        FAIL("fstat");
    printf("fstat size: %lld\n", (long long)st.st_size);
    printf("inode: %llu\n", (unsigned long long)st.st_ino);
    printf("mtime: %lld.%09ld\n", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);

    if (stat(path, &st) != 0)
        FAIL("stat");
    printf("stat size: %lld\n", (long long)st.st_size);

    lseek(fd, 0, SEEK_SET);
    memset(buf, 0, sizeof buf);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0)
        FAIL("read back");
    printf("contents(%zd): %s\n", n, buf);

    close(fd);
    if (unlink(path) != 0)
        FAIL("unlink");
    printf("unlinked: %s\n", access(path, F_OK) == 0 ? "no" : "yes");
    return 0;
}

/* shared_file_rounds.c - maps a file MAP_SHARED in three rounds, writing one byte through the
 * mapping each time, and prints what each round saw first. Between rounds the file is, by
 * argv[2]: "keep" left alone (a round sees the previous round's byte), "trunc" opened again
 * with O_TRUNC, or "recreate" deleted and created again (both: a round sees 0; a new file
 * often gets the inode number of the deleted one). Exit status: 0. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/shared.bin", argv[1]);
    unlink(path); /* a fresh start each run */
    for (int round = 0; round < 3; round++) {
        int flags = O_RDWR | O_CREAT | (strcmp(argv[2], "trunc") == 0 ? O_TRUNC : 0);
        int fd = open(path, flags, 0600);
        if (fd < 0 || ftruncate(fd, 4096) != 0)
            return 1;
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return 1;
        printf("round %d sees %d\n", round, p[0]);
        fflush(stdout);
        p[0] = (char)(42 + round);
        munmap(p, 4096);
        close(fd);
        if (strcmp(argv[2], "recreate") == 0)
            unlink(path);
    }
    return 0;
}

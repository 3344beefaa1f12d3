/* getdents.c - lists a directory (argv[1], default /usr/lib) with
 * opendir/readdir (getdents64 underneath), printing inode and name in the
 * order the kernel returns them (hash order on ext4 etc., not sorted), then
 * the entry count.  Output changes if the directory changes between record
 * and replay; replay must reproduce the recorded listing.
 * Exit status: 0, or 4 if the directory cannot be opened. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/usr/lib";
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return 4;
    }
    long count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        printf("%llu %s\n", (unsigned long long)e->d_ino, e->d_name);
        count++;
    }
    closedir(d);
    printf("count: %ld\n", count);
    return 0;
}

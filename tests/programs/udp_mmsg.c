/* sendmmsg/recvmmsg over UDP on the loopback: the kernel stores each message's msg_len in the
   caller's array (what glibc's DNS resolver reads back after sending its A and AAAA queries
   at once). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void)
{
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (rx < 0 || tx < 0 || bind(rx, (void *)&addr, sizeof addr)
        || getsockname(rx, (void *)&addr, &len) || connect(tx, (void *)&addr, sizeof addr)) {
        perror("socket setup");
        return 1;
    }
    char first[] = "hello", second[] = "world!!";
    struct iovec out[2] = {{first, 5}, {second, 7}};
    struct mmsghdr sent[2];
    memset(sent, 0, sizeof sent);
    for (int i = 0; i < 2; i++) {
        sent[i].msg_hdr.msg_iov = &out[i];
        sent[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(tx, sent, 2, 0);
    printf("sendmmsg %d, lengths %u %u\n", n, sent[0].msg_len, sent[1].msg_len);

    char a[16] = {0}, b[16] = {0};
    struct iovec in[2] = {{a, sizeof a}, {b, sizeof b}};
    struct mmsghdr got[2];
    memset(got, 0, sizeof got);
    for (int i = 0; i < 2; i++) {
        got[i].msg_hdr.msg_iov = &in[i];
        got[i].msg_hdr.msg_iovlen = 1;
    }
    n = recvmmsg(rx, got, 2, MSG_WAITFORONE, NULL);
    printf("recvmmsg %d, lengths %u %u: '%s' '%s'\n", n, got[0].msg_len, got[1].msg_len, a, b);
    return 0;
}

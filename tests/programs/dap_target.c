/* dap_target.c - a program for editor sessions (tests/test_dap.py): a struct with an array and
 * a pointer to expand, a linked list, a global written in a helper (data breakpoints), a
 * line with a call (stepBack over it) and output to stdout and stderr. */
#include <stdio.h>
#include <string.h>

struct point {
    int x;
    int y;
};

struct shape {
    char name[16];
    struct point corners[3];
    struct shape *next;
};

int score = 0;
static struct shape shapes[2];

static int area2(const struct shape *s)
{
    const struct point *p = s->corners;
    int twice = (p[1].x - p[0].x) * (p[2].y - p[0].y) - (p[2].x - p[0].x) * (p[1].y - p[0].y);
    return twice < 0 ? -twice : twice;
}

static void add_score(int points)
{
    score += points;
}

int main(void)
{
    strcpy(shapes[0].name, "triangle");
    shapes[0].corners[1].x = 4;
    shapes[0].corners[2].y = 3;
    shapes[0].next = &shapes[1];
    strcpy(shapes[1].name, "sliver");
    shapes[1].corners[1].x = 1;
    shapes[1].corners[2].y = 1;
    struct shape *head = &shapes[0];
    int round = 0;
    for (struct shape *s = head; s != NULL; s = s->next) {
        int a = area2(s);
        add_score(a);
        round++;
        printf("%s: area2=%d score=%d\n", s->name, a, score);
    }
    fprintf(stderr, "done after %d rounds\n", round);
    return score == 13 ? 0 : 1;
}

// The context-switch baseline of test/sched.bench.ts, on the host Linux kernel: two tasks pinned to
// one CPU call sched_yield N times each, either two threads of one process (one mm) or two processes
// (two mms, so every switch changes CR3). Prints "<mode> <switches> <ns>": voluntary + involuntary
// context switches of both tasks (getrusage) and the wall time between a shared start and both ends.
//   gcc -O2 -pthread -o /tmp/yield-pingpong test/native/yield-pingpong.c && /tmp/yield-pingpong threads 200000
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long n;

static void pin0(void) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(0, &s);
  if (sched_setaffinity(0, sizeof s, &s) != 0) { perror("sched_setaffinity"); exit(1); }
}
static void *yielder(void *arg) {
  (void)arg;
  pin0();
  for (long i = 0; i < n; i++) sched_yield();
  return NULL;
}
static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static long switches(int who) {
  struct rusage u;
  getrusage(who, &u);
  return u.ru_nvcsw + u.ru_nivcsw;
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "threads") && strcmp(argv[1], "processes"))) {
    fprintf(stderr, "usage: %s threads|processes N\n", argv[0]);
    return 2;
  }
  n = atol(argv[2]);
  long long t0 = now_ns();
  long sw;
  if (!strcmp(argv[1], "threads")) {
    long before = switches(RUSAGE_SELF);
    pthread_t a, b;
    pthread_create(&a, NULL, yielder, NULL);
    pthread_create(&b, NULL, yielder, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    sw = switches(RUSAGE_SELF) - before;
  } else {
    for (int i = 0; i < 2; i++)
      if (fork() == 0) { yielder(NULL); _exit(0); }
    while (wait(NULL) > 0) {}
    sw = switches(RUSAGE_CHILDREN);
  }
  printf("%s %ld %lld\n", argv[1], sw, now_ns() - t0);
  return 0;
}

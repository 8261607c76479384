// The 64-bit syscall lengths of traces/mmap-flags.jsonl, asked of the host Linux kernel:
//   gcc -O2 -o /tmp/u64-args test/native/u64-args.c && /tmp/u64-args
// Linux 6.18 x86-64 printed: mmap ENOMEM, mprotect ENOMEM, munmap EINVAL, and EINVAL for the three mremaps.
#define _GNU_SOURCE
#include <sys/mman.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
int main(void){
  unsigned long big = 0xfffffffffffff001UL;
  char *p = mmap(0, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
  errno=0; void *r = mmap(0, big, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0); printf("mmap %s\n", r==MAP_FAILED?strerrorname_np(errno):"ok");
  errno=0; int x = mprotect(p, big, PROT_READ); printf("mprotect %s\n", x?strerrorname_np(errno):"ok");
  errno=0; x = munmap(p, big); printf("munmap %s\n", x?strerrorname_np(errno):"ok");
  errno=0; r = mremap(p, 4096, big, MREMAP_MAYMOVE); printf("mremap new_len %s\n", r==MAP_FAILED?strerrorname_np(errno):"ok");
  errno=0; r = mremap(p, big, 4096, MREMAP_MAYMOVE); printf("mremap old_len %s\n", r==MAP_FAILED?strerrorname_np(errno):"ok");
  errno=0; r = mremap(p, 4096, 0xfffffffffffff000UL, MREMAP_MAYMOVE); printf("mremap new_len f000 %s\n", r==MAP_FAILED?strerrorname_np(errno):"ok");
  return 0;
}

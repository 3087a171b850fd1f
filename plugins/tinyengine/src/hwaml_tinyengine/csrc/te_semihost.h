/* ARM semihosting (BKPT 0xAB, Thumb): text out and exit, for QEMU
 * (-semihosting) or a debugger. No heap, no libc. */
#ifndef TE_SEMIHOST_H
#define TE_SEMIHOST_H
#include <stdint.h>

static inline int32_t te_semihost_call(int32_t op, const void *arg) {
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* SYS_WRITE0: a NUL-terminated string to the host's console */
static inline void te_semihost_puts(const char *s) { (void)te_semihost_call(0x04, s); }

static inline void te_semihost_putu(uint32_t v) {
    char b[12];
    int i = 11;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10u); v /= 10u; } while (v);
    te_semihost_puts(b + i);
}

/* SYS_EXIT: ADP_Stopped_ApplicationExit (status 0) or ADP_Stopped_RunTimeErrorUnknown */
static inline void te_semihost_exit(int status) {
    (void)te_semihost_call(0x18, (const void *)(uintptr_t)(status == 0 ? 0x20026 : 0x20023));
    for (;;) {}
}

#endif

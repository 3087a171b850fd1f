/* hwaml-tinyengine bare-metal startup for Cortex-M (ARMv7-M / ARMv7E-M): the
 * vector table, the reset handler (copies .data from Flash, zeroes .bss, turns
 * the FPU on when the build uses one, calls main, reports main's status through
 * semihosting) and the memcpy/memset the compiler may call. Symbols come from
 * the generated linker script (firmware.ld, qemu.ld). No heap, no libc. */
#include <stddef.h>
#include <stdint.h>
#include "te_semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);

void Default_Handler(void) {
    te_semihost_puts("fault: unexpected exception\n");
    te_semihost_exit(3);
}

void Reset_Handler(void) {
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++) *dst = 0;
#if defined(__ARM_FP)
    /* CP10/CP11 full access (the FPU), then a barrier */
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    te_semihost_exit(main());
}

/* ARMv7-M vector table: initial stack pointer, reset and the 14 system exceptions */
__attribute__((section(".isr_vector"), used)) void (*const te_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack,
    Reset_Handler,
    Default_Handler, /* NMI */
    Default_Handler, /* HardFault */
    Default_Handler, /* MemManage */
    Default_Handler, /* BusFault */
    Default_Handler, /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
};

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int v, size_t n) {
    uint8_t *d = (uint8_t *)dst;
    while (n--) *d++ = (uint8_t)v;
    return dst;
}

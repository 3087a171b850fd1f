/* Bare-metal test harness (semihosting): runs the embedded inputs, compares
 * every output byte with the Python int8 reference and prints, per vector, the
 * SysTick count of one inference (core clock cycles on a board; under QEMU
 * -icount shift=0 with the MPS2's 25 MHz clock, 40 instructions per tick) and
 * the stack the inference used (painted and scanned below the harness's frame).
 * Built with -DTE_PROFILE, the per-layer counts (model.c marks each layer) are
 * printed too. Prints "matched K/N" and exits with status 0 iff all match. */
#include <stdint.h>
#include "te_harness.h"
#include "te_semihost.h"
#include "test_data.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define TE_STACK_PAINT 0x5AC3E11Du

extern uint32_t _sstack; /* lowest address of the stack region (linker script) */
static volatile uint32_t te_wraps;

void SysTick_Handler(void) { te_wraps++; }

/* ticks since the counter started (SysTick counts down from 2^24 - 1) */
static uint32_t te_ticks(void) {
    uint32_t w, v;
    do {
        w = te_wraps;
        v = SYST_CVR;
    } while (w != te_wraps);
    return w * 0x1000000u + (0xFFFFFFu - v);
}

#ifdef TE_PROFILE
static uint32_t te_layer_ticks[MODEL_N_LAYERS + 1];
static uint32_t te_last;
void te_profile_mark(int layer) {
    uint32_t t = te_ticks();
    te_layer_ticks[layer] += t - te_last;
    te_last = te_ticks();
}
#endif

static uint32_t te_sp(void) {
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

int main(void) {
    int i, j, matched = 0;
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* processor clock, interrupt on wrap, enabled */
    while (SYST_CVR == 0u) {}
    for (i = 0; i < TEST_N; i++) {
        const int8_t *out;
        uint32_t t0, t1, *p, *top = (uint32_t *)(te_sp() - 64u), used;
        int ok = 1;
        for (p = &_sstack; p < top; p++) *p = TE_STACK_PAINT;
        {
            int8_t *dst = model_input();
            for (j = 0; j < MODEL_INPUT_SIZE; j++) dst[j] = test_inputs[i][j];
        }
#ifdef TE_PROFILE
        te_last = te_ticks();
#endif
        t0 = te_ticks();
        model_run();
        t1 = te_ticks();
        for (p = &_sstack; p < top && *p == TE_STACK_PAINT; p++) {}
        used = (uint32_t)((uintptr_t)top - (uintptr_t)p);
        out = model_output();
        for (j = 0; j < MODEL_OUTPUT_SIZE; j++) {
            if (out[j] != test_expected[i][j]) ok = 0;
        }
        matched += ok;
        te_semihost_puts("vector ");
        te_semihost_putu((uint32_t)i);
        te_semihost_puts(ok ? " ok" : " MISMATCH");
        te_semihost_puts(" systick ");
        te_semihost_putu(t1 - t0);
        te_semihost_puts(" stack ");
        te_semihost_putu(used);
        te_semihost_puts("\n");
    }
#ifdef TE_PROFILE
    for (i = 0; i <= MODEL_N_LAYERS; i++) {
        te_semihost_puts("layer ");
        te_semihost_putu((uint32_t)i);
        te_semihost_puts(" systick ");
        te_semihost_putu(te_layer_ticks[i]);
        te_semihost_puts("\n");
    }
#endif
    te_semihost_puts("matched ");
    te_semihost_putu((uint32_t)matched);
    te_semihost_puts("/");
    te_semihost_putu((uint32_t)TEST_N);
    te_semihost_puts("\n");
    return matched == TEST_N ? 0 : 1;
}

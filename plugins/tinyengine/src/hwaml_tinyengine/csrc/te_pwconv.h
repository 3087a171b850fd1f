/* Kernel template: pointwise (1 x 1) convolution straight from the NHWC input
 * (no im2col); the input zero point is folded into the bias. Two output pixels
 * x two output channels per step. On DSP cores the two pixels' inputs are first
 * widened once to int16 pairs in the scratch column `col` (SXTB16 lanes: for
 * each four inputs x0..x3 the words (x0, x2) and (x1, x3); 2 x TE_CINP int16),
 * so each output-channel pair then costs one 32-bit weight load and two SXTB16
 * per four inputs, and every SMLAD (two MACs) reads its column pair from one
 * aligned word; elsewhere the same loop in plain C (col unused). Each output
 * channel's requantisation constants are loaded once for both pixels.
 * Define before including: TE_FN; TE_WEIGHT, TE_BIAS, TE_MULT,
 * TE_SHIFT; TE_S (stride); TE_CIN, TE_COUT; TE_ZPOUT; TE_QMIN, TE_QMAX;
 * TE_RQ (TE_RQ_FAST or TE_RQ_EXACT: the requantisation the generator checked).
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
#define TE_Q_(acc, q) TE_OUT_(te_rq((acc), (q), TE_RQ))
#define TE_QC_(co) te_rqc_of(TE_MULT[co], TE_SHIFT[co], TE_ZPOUT, TE_RQ)
#define TE_C4_ (TE_CIN / 4)          /* SIMD steps of four inputs */
#define TE_CW_ (2 * TE_C4_)          /* column words of one pixel */
#if TE_DSP
#if defined(__GNUC__)
/* one step: four inputs of two pixels (column words at ca, pixel b TE_CW_ words on)
 * times four weights of two output channels (wq, wq + TE_CIN): eight SMLAD with
 * every operand in a register (written out, so that the compiler cannot spill
 * the four accumulators); advances ca by two words and wq by four weights */
#define TE_STEP_(ca, wq) \
    do { \
        int32_t t0_, t1_, t2_, t3_, t4_, t5_; \
        __asm__("ldr %[t0], [%[w]], #4\n\t" \
                "ldr %[t1], [%[c]], #8\n\t" \
                "ldr %[t2], [%[c], #-4]\n\t" \
                "sxtb16 %[t3], %[t0]\n\t" \
                "sxtb16 %[t0], %[t0], ror #8\n\t" \
                "smlad %[a0], %[t1], %[t3], %[a0]\n\t" \
                "smlad %[a0], %[t2], %[t0], %[a0]\n\t" \
                "ldr %[t4], [%[c], %[ob]]\n\t" \
                "ldr %[t5], [%[c], %[ob4]]\n\t" \
                "smlad %[b0], %[t4], %[t3], %[b0]\n\t" \
                "smlad %[b0], %[t5], %[t0], %[b0]\n\t" \
                "ldr %[t0], [%[w], %[ow]]\n\t" \
                "sxtb16 %[t3], %[t0]\n\t" \
                "sxtb16 %[t0], %[t0], ror #8\n\t" \
                "smlad %[a1], %[t1], %[t3], %[a1]\n\t" \
                "smlad %[a1], %[t2], %[t0], %[a1]\n\t" \
                "smlad %[b1], %[t4], %[t3], %[b1]\n\t" \
                "smlad %[b1], %[t5], %[t0], %[b1]" \
                : [a0] "+r"(a0), [b0] "+r"(b0), [a1] "+r"(a1), [b1] "+r"(b1), [c] "+r"(ca), [w] "+r"(wq), \
                  [t0] "=&r"(t0_), [t1] "=&r"(t1_), [t2] "=&r"(t2_), [t3] "=&r"(t3_), [t4] "=&r"(t4_), [t5] "=&r"(t5_) \
                : [ob] "i"(4 * TE_CW_ - 8), [ob4] "i"(4 * TE_CW_ - 4), [ow] "i"(TE_CIN - 4) \
                : "memory"); \
    } while (0)
#else
#define TE_STEP_(ca, wq) \
    do { \
        const int32_t xae = (int32_t)ca[0], xao = (int32_t)ca[1]; \
        const int32_t xbe = (int32_t)ca[TE_CW_], xbo = (int32_t)ca[TE_CW_ + 1]; \
        uint32_t w4 = te_ld32(wq); \
        int32_t we = __sxtb16(w4), wo = te_sxtb16_ror8(w4); \
        a0 = __smlad(xao, wo, __smlad(xae, we, a0)); \
        b0 = __smlad(xbo, wo, __smlad(xbe, we, b0)); \
        w4 = te_ld32(wq + TE_CIN); \
        we = __sxtb16(w4); \
        wo = te_sxtb16_ror8(w4); \
        a1 = __smlad(xao, wo, __smlad(xae, we, a1)); \
        b1 = __smlad(xbo, wo, __smlad(xbe, we, b1)); \
        ca += 2; \
        wq += 4; \
    } while (0)
#endif
#endif
TE_KERNEL void TE_FN(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0, npix = (oy1 - oy0) * ow;
    /* the pixel walk on offsets: the next pixel is TE_S inputs / one output on,
     * plus the rest of the buffer row after the window's last column */
    const int srow = (TE_S * ibw - TE_S * ow) * TE_CIN, drow = (obw - ow) * TE_COUT;
    int p, co, c, xa = 0;
    int ia = ((oy0 * TE_S - iby) * ibw + (ox0 * TE_S - ibx)) * TE_CIN, oa = ((oy0 - oby) * obw + (ox0 - obx)) * TE_COUT;
#if TE_DSP
    te_word *const cw = (te_word *)(void *)col;
#else
    (void)col;
#endif
    for (p = 0; p < npix; p += 2) {
        const int two = p + 1 < npix;
        int ib = ia + TE_S * TE_CIN, ob = oa + TE_COUT, xb = xa + 1;
        if (xb == ow) {
            xb = 0;
            ib += srow;
            ob += drow;
        }
        if (!two) { /* a single last pixel: b is a */
            ib = ia;
            ob = oa;
        }
        const int8_t *const sa = in + ia, *const sb = in + ib;
        int8_t *const da = out + oa, *const db = out + ob;
        const int8_t *w0 = TE_WEIGHT;
#if TE_DSP
        for (c = 0; c < TE_C4_; c++) {
            const uint32_t xa4 = te_ld32(sa + 4 * c), xb4 = te_ld32(sb + 4 * c);
            cw[2 * c] = (uint32_t)__sxtb16(xa4);
            cw[2 * c + 1] = (uint32_t)te_sxtb16_ror8(xa4);
            cw[TE_CW_ + 2 * c] = (uint32_t)__sxtb16(xb4);
            cw[TE_CW_ + 2 * c + 1] = (uint32_t)te_sxtb16_ror8(xb4);
        }
#endif
        for (co = 0; co + 1 < TE_COUT; co += 2) {
            int32_t a0 = TE_BIAS[co], b0 = a0, a1 = TE_BIAS[co + 1], b1 = a1;
#if TE_DSP
            {
                const te_word *ca = cw;
                const int8_t *wq = w0;
                TE_UNROLL_4
                for (c = 0; c < TE_C4_; c++) TE_STEP_(ca, wq);
            }
            c = 4 * TE_C4_;
#else
            c = 0;
#endif
            for (; c < TE_CIN; c++) {
                const int32_t x = sa[c], y = sb[c];
                a0 += x * w0[c];
                b0 += y * w0[c];
                a1 += x * w0[TE_CIN + c];
                b1 += y * w0[TE_CIN + c];
            }
            {   /* a single last pixel has db == da and b == a: its stores repeat a's */
                const te_rqc q0 = TE_QC_(co), q1 = TE_QC_(co + 1);
                da[co] = TE_Q_(a0, q0);
                da[co + 1] = TE_Q_(a1, q1);
                db[co] = TE_Q_(b0, q0);
                db[co + 1] = TE_Q_(b1, q1);
            }
            w0 += 2 * TE_CIN;
        }
        if (TE_COUT & 1) { /* the last output channel */
            int32_t a0 = TE_BIAS[TE_COUT - 1], b0 = a0;
#if TE_DSP
            for (c = 0; c < TE_C4_; c++) {
                const uint32_t w4 = te_ld32(w0 + 4 * c);
                const int32_t we = __sxtb16(w4), wo = te_sxtb16_ror8(w4);
                a0 = __smlad((int32_t)cw[2 * c + 1], wo, __smlad((int32_t)cw[2 * c], we, a0));
                b0 = __smlad((int32_t)cw[TE_CW_ + 2 * c + 1], wo, __smlad((int32_t)cw[TE_CW_ + 2 * c], we, b0));
            }
            c = 4 * TE_C4_;
#else
            c = 0;
#endif
            for (; c < TE_CIN; c++) {
                a0 += (int32_t)sa[c] * w0[c];
                b0 += (int32_t)sb[c] * w0[c];
            }
            {
                const te_rqc q0 = TE_QC_(TE_COUT - 1);
                da[TE_COUT - 1] = TE_Q_(a0, q0);
                if (two) db[TE_COUT - 1] = TE_Q_(b0, q0);
            }
        }
        /* the next pair starts after pixel b */
        ia = ib + TE_S * TE_CIN;
        oa = ob + TE_COUT;
        if (++xb == ow) {
            xb = 0;
            ia += srow;
            oa += drow;
        }
        xa = xb;
    }
}
#undef TE_FN
#undef TE_WEIGHT
#undef TE_BIAS
#undef TE_MULT
#undef TE_SHIFT
#undef TE_S
#undef TE_CIN
#undef TE_COUT
#undef TE_ZPOUT
#undef TE_QMIN
#undef TE_QMAX
#undef TE_LUT
#undef TE_RQ
#undef TE_OUT_
#undef TE_Q_
#undef TE_QC_
#undef TE_C4_
#undef TE_CW_
#undef TE_STEP_

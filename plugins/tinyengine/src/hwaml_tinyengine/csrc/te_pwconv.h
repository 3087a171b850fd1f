/* Kernel template: pointwise (1 x 1) convolution straight from the NHWC input
 * (no im2col); the input zero point is folded into the bias. Two output pixels
 * x two output channels per step: on DSP cores four int8 values per 32-bit load,
 * SXTB16 to int16 pairs and SMLAD (two MACs per instruction); elsewhere the same
 * loop in plain C. Define before including: TE_FN; TE_WEIGHT, TE_BIAS, TE_MULT,
 * TE_SHIFT; TE_S (stride); TE_CIN, TE_COUT; TE_ZPOUT; TE_QMIN, TE_QMAX;
 * TE_RQ (TE_RQ_FAST or TE_RQ_EXACT: the requantisation the generator checked).
 * Optional: TE_LUT (a 256-entry int8 table: the fused h-swish/h-sigmoid; TE_ZPOUT
 * is then the pre-activation zero point). The macros are undefined at the end. */
#ifdef TE_LUT /* table activation (h-swish, h-sigmoid) on the pre-activation int8 value */
#define TE_OUT_(v) te_lut(TE_LUT, (v))
#else
#define TE_OUT_(v) te_clamp((v), TE_QMIN, TE_QMAX)
#endif
#define TE_Q_(acc, co) TE_OUT_(TE_RQ((acc), TE_MULT[co], TE_SHIFT[co]) + TE_ZPOUT)
#if TE_DSP
/* acc += the dot product of 4 int8 x and 4 int8 w (as 32-bit words) */
#define TE_DOT4_(acc, xe, xo, we, wo) (acc) = __smlad((xo), (wo), __smlad((xe), (we), (acc)))
#endif
static void TE_FN(const int8_t *in, int8_t *out, int16_t *col, const int16_t *win) {
    TE_WIN_HEAD
    const int iby = win[7], ibx = win[8], ibw = win[9];
    const int ow = ox1 - ox0, npix = (oy1 - oy0) * ow;
    int p, co, c;
    (void)col;
    for (p = 0; p < npix; p += 2) {
        const int two = p + 1 < npix;
        const int ya = oy0 + p / ow, xa = ox0 + p % ow;
        const int yb = two ? oy0 + (p + 1) / ow : ya, xb = two ? ox0 + (p + 1) % ow : xa;
        const int8_t *sa = in + ((ya * TE_S - iby) * ibw + (xa * TE_S - ibx)) * TE_CIN;
        const int8_t *sb = in + ((yb * TE_S - iby) * ibw + (xb * TE_S - ibx)) * TE_CIN;
        int8_t *da = out + ((ya - oby) * obw + (xa - obx)) * TE_COUT;
        int8_t *db = out + ((yb - oby) * obw + (xb - obx)) * TE_COUT;
        const int8_t *w0 = TE_WEIGHT;
        for (co = 0; co + 1 < TE_COUT; co += 2) {
            const int8_t *w1 = w0 + TE_CIN;
            int32_t a0 = TE_BIAS[co], b0 = a0, a1 = TE_BIAS[co + 1], b1 = a1;
            c = 0;
#if TE_DSP
            TE_UNROLL_4
            for (; c + 4 <= TE_CIN; c += 4) {
                const uint32_t xa4 = te_ld32(sa + c), xb4 = te_ld32(sb + c);
                const int32_t xae = __sxtb16(xa4), xao = te_sxtb16_ror8(xa4);
                const int32_t xbe = __sxtb16(xb4), xbo = te_sxtb16_ror8(xb4);
                uint32_t w4 = te_ld32(w0 + c);
                int32_t we = __sxtb16(w4), wo = te_sxtb16_ror8(w4);
                TE_DOT4_(a0, xae, xao, we, wo);
                TE_DOT4_(b0, xbe, xbo, we, wo);
                w4 = te_ld32(w1 + c);
                we = __sxtb16(w4);
                wo = te_sxtb16_ror8(w4);
                TE_DOT4_(a1, xae, xao, we, wo);
                TE_DOT4_(b1, xbe, xbo, we, wo);
            }
#endif
            for (; c < TE_CIN; c++) {
                const int32_t x = sa[c], y = sb[c];
                a0 += x * w0[c];
                b0 += y * w0[c];
                a1 += x * w1[c];
                b1 += y * w1[c];
            }
            da[co] = TE_Q_(a0, co);
            da[co + 1] = TE_Q_(a1, co + 1);
            if (two) {
                db[co] = TE_Q_(b0, co);
                db[co + 1] = TE_Q_(b1, co + 1);
            }
            w0 += 2 * TE_CIN;
        }
        if (TE_COUT & 1) { /* the last output channel */
            int32_t a0 = TE_BIAS[TE_COUT - 1], b0 = a0;
            c = 0;
#if TE_DSP
            for (; c + 4 <= TE_CIN; c += 4) {
                const uint32_t xa4 = te_ld32(sa + c), xb4 = te_ld32(sb + c), w4 = te_ld32(w0 + c);
                const int32_t we = __sxtb16(w4), wo = te_sxtb16_ror8(w4);
                TE_DOT4_(a0, __sxtb16(xa4), te_sxtb16_ror8(xa4), we, wo);
                TE_DOT4_(b0, __sxtb16(xb4), te_sxtb16_ror8(xb4), we, wo);
            }
#endif
            for (; c < TE_CIN; c++) {
                a0 += (int32_t)sa[c] * w0[c];
                b0 += (int32_t)sb[c] * w0[c];
            }
            da[TE_COUT - 1] = TE_Q_(a0, TE_COUT - 1);
            if (two) db[TE_COUT - 1] = TE_Q_(b0, TE_COUT - 1);
        }
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
#undef TE_DOT4_

/* Kernel template: residual add of two int8 tensors (TFLite semantics: both
 * inputs shifted left by TE_LS, rescaled to a common scale, summed, rescaled to
 * the output). Define before including: TE_FN; TE_C; TE_ZA, TE_ZB, TE_ZO (zero
 * points); TE_LS; TE_MA, TE_SA, TE_MB, TE_SB, TE_MO, TE_SO (Q31 multipliers and
 * shifts); TE_QMIN, TE_QMAX. The macros are undefined at the end. */
/* the inlined 32-bit requantisation where the (literal) shifts allow it: the
 * inputs are at most 255 * 2^TE_LS < 2^28, their rescaled sum below 2^29 */
#if TE_SA <= -1 && TE_SB <= -1 && TE_LS <= 20
#define TE_RQA_(x, m, s) te_requant_fast((x), (m), -(s))
#else
#define TE_RQA_(x, m, s) te_requant((x), (m), (s))
#endif
#if TE_SO <= -1 && TE_LS <= 20
#define TE_RQO_(x, m, s) te_requant_fast((x), (m), -(s))
#else
#define TE_RQO_(x, m, s) te_requant((x), (m), (s))
#endif
TE_KERNEL void TE_FN(const int8_t *a, const int8_t *b, int8_t *out, const int16_t *win) {
    TE_WIN_HEAD
    const int aby = win[7], abx = win[8], abw = win[9];
    const int bby = win[10], bbx = win[11], bbw = win[12];
    int oy, ox, c;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            const int8_t *pa = a + ((oy - aby) * abw + (ox - abx)) * TE_C;
            const int8_t *pb = b + ((oy - bby) * bbw + (ox - bbx)) * TE_C;
            int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * TE_C;
            for (c = 0; c < TE_C; c++) {
                const int32_t xa = TE_RQA_((pa[c] - TE_ZA) * (1 << TE_LS), TE_MA, TE_SA);
                const int32_t xb = TE_RQA_((pb[c] - TE_ZB) * (1 << TE_LS), TE_MB, TE_SB);
                po[c] = te_clamp(TE_RQO_(xa + xb, TE_MO, TE_SO) + TE_ZO, TE_QMIN, TE_QMAX);
            }
        }
    }
}
#undef TE_FN
#undef TE_C
#undef TE_ZA
#undef TE_ZB
#undef TE_ZO
#undef TE_LS
#undef TE_MA
#undef TE_SA
#undef TE_MB
#undef TE_SB
#undef TE_MO
#undef TE_SO
#undef TE_QMIN
#undef TE_QMAX
#undef TE_RQA_
#undef TE_RQO_

/* Kernel template: a tensor times a per-channel int8 vector (the scaling of a
 * squeeze-and-excite block): (x - TE_ZX) * (s - TE_ZS) requantised to the output.
 * Define before including: TE_FN; TE_C; TE_ZX, TE_ZS, TE_ZO (zero points); TE_M,
 * TE_SH (Q31 multiplier and shift of s_x * s_s / s_out); TE_QMIN, TE_QMAX.
 * The macros are undefined at the end. */
TE_KERNEL void TE_FN(const int8_t *x, const int8_t *s, int8_t *out, const int16_t *win) {
    TE_WIN_HEAD
    const int xby = win[7], xbx = win[8], xbw = win[9];
    int oy, ox, c;
    for (oy = oy0; oy < oy1; oy++) {
        for (ox = ox0; ox < ox1; ox++) {
            const int8_t *px = x + ((oy - xby) * xbw + (ox - xbx)) * TE_C;
            int8_t *po = out + ((oy - oby) * obw + (ox - obx)) * TE_C;
            for (c = 0; c < TE_C; c++)
                po[c] = te_clamp(te_requant((px[c] - TE_ZX) * (s[c] - TE_ZS), TE_M, TE_SH) + TE_ZO, TE_QMIN, TE_QMAX);
        }
    }
}
#undef TE_FN
#undef TE_C
#undef TE_ZX
#undef TE_ZS
#undef TE_ZO
#undef TE_M
#undef TE_SH
#undef TE_QMIN
#undef TE_QMAX

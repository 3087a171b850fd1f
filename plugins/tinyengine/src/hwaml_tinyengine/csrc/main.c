/* Host runner: model_run_host IN.bin OUT.bin [REPEAT]. Inputs are int8 H x W x C
 * records, outputs int8 records; prints the mean time per inference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "te_harness.h"

int main(int argc, char **argv) {
    FILE *fi, *fo;
    static int8_t buf[MODEL_INPUT_SIZE];
    long n = 0;
    int repeat = argc > 3 ? atoi(argv[3]) : 1, r;
    double total = 0.0;
    if (argc < 3) { fprintf(stderr, "usage: %s IN.bin OUT.bin [REPEAT]\n", argv[0]); return 2; }
    fi = fopen(argv[1], "rb");
    fo = fopen(argv[2], "wb");
    if (!fi || !fo) { fprintf(stderr, "cannot open input or output file\n"); return 2; }
    while (fread(buf, 1, MODEL_INPUT_SIZE, fi) == MODEL_INPUT_SIZE) {
        for (r = 0; r < repeat; r++) {
            clock_t t0 = clock();
            memcpy(model_input(), buf, MODEL_INPUT_SIZE);
            model_run();
            total += (double)(clock() - t0) / CLOCKS_PER_SEC;
        }
        fwrite(model_output(), 1, MODEL_OUTPUT_SIZE, fo);
        n++;
    }
    fclose(fi);
    fclose(fo);
    printf("inferences %ld ms_per_inference %.6f arena_bytes %d\n", n, n ? 1000.0 * total / (n * repeat) : 0.0, MODEL_ARENA_BYTES);
    return 0;
}

/* Host test harness: runs the embedded inputs and compares every output byte
 * with the Python int8 reference. Exit status 0 iff all match. */
#include <stdio.h>
#include <string.h>
#include "te_harness.h"
#include "test_data.h"

int main(void) {
    int i, j, matched = 0;
    for (i = 0; i < TEST_N; i++) {
        const int8_t *out;
        int ok = 1;
        memcpy(model_input(), test_inputs[i], MODEL_INPUT_SIZE);
        model_run();
        out = model_output();
        for (j = 0; j < MODEL_OUTPUT_SIZE; j++) {
            if (out[j] != test_expected[i][j]) {
                if (ok) printf("vector %d: output[%d] = %d, expected %d\n", i, j, out[j], test_expected[i][j]);
                ok = 0;
            }
        }
        matched += ok;
    }
    printf("matched %d/%d\n", matched, TEST_N);
    return matched == TEST_N ? 0 : 1;
}

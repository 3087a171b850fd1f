/* hwaml-tinyengine: the API of one generated int8 model. Every public name
 * carries the model's prefix (here "model"), so several models link into one
 * firmware. model_config.h (generated) gives MODEL_ARENA_BYTES,
 * MODEL_INPUT_H/W/C, MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE, MODEL_N_LAYERS and
 * the input/output quantisation (MODEL_INPUT_SCALE, MODEL_INPUT_ZERO_POINT,
 * MODEL_OUTPUT_SCALE, MODEL_OUTPUT_ZERO_POINT).
 *
 * Placement: the arena is defined with MODEL_ARENA_ATTR if defined, else
 * TE_ARENA_ATTR; the constant arrays with TE_WEIGHTS_ATTR (see te_runtime.h:
 * -DTE_ARENA_SECTION='".bss.te_arena"' puts the arena in that section, which
 * the generated linker scripts map to the ARENA region). */
#ifndef MODEL_H_
#define MODEL_H_
#include <stdint.h>
#include "model_config.h"
#ifdef __cplusplus
extern "C" {
#endif

/* Write one int8 input (H x W x C, quantised with the scale and zero point
 * above) here before model_run(); it is overwritten by the run. */
int8_t *model_input(void);
/* Valid after model_run() until the next write to model_input(). */
const int8_t *model_output(void);
void model_run(void);

#ifdef __cplusplus
}
#endif
#endif

/* hwaml-tinyengine: the API of a generated int8 model.
 * model_config.h (generated) gives MODEL_ARENA_BYTES, MODEL_INPUT_H/W/C,
 * MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE and the input/output quantisation
 * (MODEL_INPUT_SCALE, MODEL_INPUT_ZERO_POINT, MODEL_OUTPUT_SCALE,
 * MODEL_OUTPUT_ZERO_POINT). */
#ifndef TE_MODEL_H
#define TE_MODEL_H
#include <stdint.h>
#include "model_config.h"

/* Write one int8 input (H x W x C, quantised with the scale and zero point
 * above) here before model_run(); it is overwritten by the run. */
int8_t *model_input(void);
/* Valid after model_run() until the next write to model_input(). */
const int8_t *model_output(void);
void model_run(void);

#endif

/* tests/fuzz/fuzz_safetensors.c — libFuzzer target: the safetensors header checks.
 * Any input must give either an error or a set whose every entry lies inside the input;
 * the target touches the first and last byte of every tensor (ASan flags any entry that
 * points outside) and walks every lookup path. Seeds: tests/fuzz/corpus/fuzz_safetensors/. */
#include "core/io/safetensors.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned touch_entries(const lm_safetensors *st)
{
    unsigned sum = 0;
    for (size_t i = 0; i < lm_safetensors_count(st); i++) {
        const lm_safetensors_entry *e = lm_safetensors_at(st, i);
        if (lm_safetensors_find(st, e->name) != e)
            __builtin_trap();
        size_t first = 0;
        if (lm_safetensors_find_prefix(st, e->name, &first) < 1 || first != i)
            __builtin_trap();
        if (e->bytes) {
            const uint8_t *p = e->data;
            sum += p[0] + p[e->bytes - 1];
        }
    }
    return sum;
}

static void touch_metadata(const lm_safetensors *st)
{
    for (size_t i = 0; i < lm_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        lm_safetensors_metadata_at(st, i, &key, &value);
        if (lm_safetensors_metadata(st, key) != value || strlen(value) > SIZE_MAX / 2)
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lm_safetensors *st;
    lm_error err;
    if (lm_safetensors_open_memory(&st, data, size, "fuzz", &err) != LM_OK)
        return 0;
    volatile unsigned sink = touch_entries(st);
    (void)sink;
    touch_metadata(st);
    lm_tensor *t = NULL;
    if (lm_safetensors_count(st) &&
        lm_safetensors_entry_tensor(&t, st, lm_safetensors_at(st, 0), &err) == LM_OK)
        lm_tensor_free(t);
    lm_safetensors_close(st);
    return 0;
}

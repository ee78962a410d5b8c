/* nodes/util/math.c — IntMath and FloatMath: one arithmetic operation on two numbers.
 *
 * The operations follow Python, since ComfyUI users know its arithmetic: integer division
 * floors (-7 / 2 = -4) and a remainder takes the sign of the divisor (-7 % 3 = 2), for
 * floats as for integers. Nothing wraps or turns silently into inf/NaN: division by zero
 * is an error naming input b, an integer result outside 64 bits is an error, and so is a
 * float result that is not finite. The op is a combo whose index is found by name; the
 * choices arrays and the op enums are kept in the same order. */
#include "core/exec.h"
#include "core/registry.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

enum { IN_A, IN_B, IN_OP, IN_COUNT };
enum { OP_ADD, OP_SUBTRACT, OP_MULTIPLY, OP_DIVIDE, OP_MODULO, OP_POWER, OP_MIN, OP_MAX };

static const char *const ops[] = { "add",   "subtract", "multiply", "divide", "modulo",
                                   "power", "min",      "max",      NULL };

/* Index of the op in `ops`, or -1 (the executor checks combos, run_node callers may not). */
static int op_index(const lm_value *op)
{
    const char *name = lm_value_as_string(op);
    for (int i = 0; name && ops[i]; i++)
        if (strcmp(ops[i], name) == 0)
            return i;
    return -1;
}

static lm_status bad_op(const lm_value *op, lm_error *err)
{
    const char *name = lm_value_as_string(op);
    lm_errorf(err, LM_EINVAL, "value_not_in_list", "\"%s\" is not an operation", name ? name : "?");
    lm_error_hint(err, "use add, subtract, multiply, divide, modulo, power, min or max");
    lm_error_at_node(err, NULL, NULL, "op");
    return LM_EINVAL;
}

static lm_status divide_by_zero(const char *what, lm_error *err)
{
    lm_errorf(err, LM_EINVAL, "division_by_zero", "cannot %s by zero (b is 0)", what);
    lm_error_hint(err, "set b to a non-zero number");
    lm_error_at_node(err, NULL, NULL, "b");
    return LM_EINVAL;
}

static lm_status int_overflow(int64_t a, const char *op, int64_t b, lm_error *err)
{
    lm_errorf(err, LM_ERANGE, "integer_overflow",
              "%s %" PRId64 " and %" PRId64 " gives a result outside the 64-bit integer range", op,
              a, b);
    lm_error_hint(err, "use smaller numbers, or FloatMath for approximate results");
    return LM_ERANGE;
}

/* Floor division and its matching remainder (Python's divmod); b != 0. */
static lm_status int_divmod(int64_t a, int64_t b, int64_t *q, int64_t *r, lm_error *err)
{
    if (a == INT64_MIN && b == -1) {
        *r = 0;
        if (!q)
            return LM_OK;
        return int_overflow(a, "dividing", b, err);
    }
    int64_t tq = a / b, tr = a % b;
    if (tr != 0 && ((tr < 0) != (b < 0))) {
        tq -= 1;
        tr += b;
    }
    if (q)
        *q = tq;
    *r = tr;
    return LM_OK;
}

/* Exponentiation by squaring with every product checked; b >= 0. */
static lm_status int_power(int64_t a, int64_t b, int64_t *res, lm_error *err)
{
    int64_t acc = 1, base = a;
    for (int64_t e = b; e > 0; e >>= 1) {
        if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
            return int_overflow(a, "raising", b, err);
        if (e > 1 && __builtin_mul_overflow(base, base, &base))
            return int_overflow(a, "raising", b, err);
    }
    *res = acc;
    return LM_OK;
}

static lm_status int_apply(int op, int64_t a, int64_t b, int64_t *res, lm_error *err)
{
    int64_t rem;
    switch (op) {
    case OP_ADD:
        return __builtin_add_overflow(a, b, res) ? int_overflow(a, "adding", b, err) : LM_OK;
    case OP_SUBTRACT:
        return __builtin_sub_overflow(a, b, res) ? int_overflow(a, "subtracting", b, err) : LM_OK;
    case OP_MULTIPLY:
        return __builtin_mul_overflow(a, b, res) ? int_overflow(a, "multiplying", b, err) : LM_OK;
    case OP_DIVIDE:
        return b == 0 ? divide_by_zero("divide", err) : int_divmod(a, b, res, &rem, err);
    case OP_MODULO:
        return b == 0 ? divide_by_zero("take a remainder", err) : int_divmod(a, b, NULL, res, err);
    case OP_POWER:
        if (b < 0) {
            lm_errorf(err, LM_ERANGE, "value_smaller_than_min",
                      "a negative exponent (%" PRId64 ") does not give a whole number", b);
            lm_error_hint(err, "use an exponent of 0 or more, or FloatMath");
            lm_error_at_node(err, NULL, NULL, "b");
            return LM_ERANGE;
        }
        return int_power(a, b, res, err);
    case OP_MIN:
        *res = LM_MIN(a, b);
        return LM_OK;
    case OP_MAX:
        *res = LM_MAX(a, b);
        return LM_OK;
    }
    return lm_errorf(err, LM_EINTERNAL, "internal_error", "IntMath has no operation %d", op);
}

static lm_status int_math_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(ctx);
    int op = op_index(in[IN_OP]);
    if (op < 0)
        return bad_op(in[IN_OP], err);
    int64_t res = 0;
    lm_status st = int_apply(op, lm_value_as_int(in[IN_A]), lm_value_as_int(in[IN_B]), &res, err);
    if (st != LM_OK)
        return st;
    out[0] = lm_value_int(res);
    if (!out[0])
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory storing the result");
    return LM_OK;
}

static const lm_input_def int_math_in[IN_COUNT] = {
    [IN_A] = { "a", LM_TYPE_INT, .help = "The first operand (left of the operation)." },
    [IN_B] = { "b", LM_TYPE_INT, .i = { .def = 1 },
               .help = "The second operand: the divisor for divide and modulo (not 0), the "
                       "exponent for power (0 or more)." },
    [IN_OP] = { "op", LM_TYPE_STRING, .s_def = "add", .choices = ops,
                .help = "The operation. divide floors like Python's // (-7 / 2 = -4); modulo "
                        "takes the sign of b like Python's % (-7 % 3 = 2). A result outside "
                        "the 64-bit range is an error, never a wrapped value." },
};
static const lm_output_def int_math_out[] = { { "INT", LM_TYPE_INT, "a op b." } };

const lm_node_def lm_node_int_math = {
    .name = "IntMath",
    .display_name = "Int Math",
    .category = "utils/math",
    .description = "Adds, subtracts, multiplies, divides (floor), takes the remainder, raises "
                   "to a power, or picks the smaller or larger of two whole numbers.",
    .inputs = int_math_in,
    .n_inputs = IN_COUNT,
    .outputs = int_math_out,
    .n_outputs = LM_COUNTOF(int_math_out),
    .run = int_math_run,
};

/* Python's float %: the remainder has the sign of b; b != 0. */
static double float_mod(double a, double b)
{
    double r = fmod(a, b);
    if (r != 0 && ((r < 0) != (b < 0)))
        r += b;
    return r;
}

static lm_status float_apply(int op, double a, double b, double *res, lm_error *err)
{
    switch (op) {
    case OP_ADD:
        *res = a + b;
        return LM_OK;
    case OP_SUBTRACT:
        *res = a - b;
        return LM_OK;
    case OP_MULTIPLY:
        *res = a * b;
        return LM_OK;
    case OP_DIVIDE:
        if (b == 0)
            return divide_by_zero("divide", err);
        *res = a / b;
        return LM_OK;
    case OP_MODULO:
        if (b == 0)
            return divide_by_zero("take a remainder", err);
        *res = float_mod(a, b);
        return LM_OK;
    case OP_POWER:
        *res = pow(a, b);
        return LM_OK;
    case OP_MIN:
        *res = fmin(a, b);
        return LM_OK;
    case OP_MAX:
        *res = fmax(a, b);
        return LM_OK;
    }
    return lm_errorf(err, LM_EINTERNAL, "internal_error", "FloatMath has no operation %d", op);
}

static lm_status float_math_run(lm_ctx *ctx, lm_value *const *in, lm_value **out, lm_error *err)
{
    LM_UNUSED(ctx);
    int op = op_index(in[IN_OP]);
    if (op < 0)
        return bad_op(in[IN_OP], err);
    double a = lm_value_as_float(in[IN_A]), b = lm_value_as_float(in[IN_B]), res = 0;
    lm_status st = float_apply(op, a, b, &res, err);
    if (st != LM_OK)
        return st;
    if (!isfinite(res)) {
        lm_errorf(err, LM_ERANGE, "value_not_finite",
                  "%s of %.17g and %.17g is not a finite number", ops[op], a, b);
        lm_error_hint(err, "change a or b so that the result is a real number in range");
        return LM_ERANGE;
    }
    out[0] = lm_value_float(res);
    if (!out[0])
        return lm_errorf(err, LM_ENOMEM, "out_of_memory", "out of memory storing the result");
    return LM_OK;
}

static const lm_input_def float_math_in[IN_COUNT] = {
    [IN_A] = { "a", LM_TYPE_FLOAT, .help = "The first operand (left of the operation)." },
    [IN_B] = { "b", LM_TYPE_FLOAT, .f = { .def = 1 },
               .help = "The second operand: the divisor for divide and modulo (not 0), the "
                       "exponent for power." },
    [IN_OP] = { "op", LM_TYPE_STRING, .s_def = "add", .choices = ops,
                .help = "The operation. divide is true division; modulo takes the sign of b "
                        "like Python's % (-7 % 3 = 2). A result that is infinite or not a "
                        "number (a negative number to a fractional power) is an error." },
};
static const lm_output_def float_math_out[] = { { "FLOAT", LM_TYPE_FLOAT, "a op b." } };

const lm_node_def lm_node_float_math = {
    .name = "FloatMath",
    .display_name = "Float Math",
    .category = "utils/math",
    .description = "Adds, subtracts, multiplies, divides, takes the remainder, raises to a "
                   "power, or picks the smaller or larger of two numbers.",
    .inputs = float_math_in,
    .n_inputs = IN_COUNT,
    .outputs = float_math_out,
    .n_outputs = LM_COUNTOF(float_math_out),
    .run = float_math_run,
};

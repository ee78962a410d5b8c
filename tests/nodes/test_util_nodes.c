/* tests/nodes/test_util_nodes.c — the utility nodes (nodes/util/): primitives, IntMath and
 * FloatMath with Python's arithmetic and their error cases, StringFormat and
 * StringConcatenate. Every node runs through lm_exec_run_node with input values built here. */
#include "core/base/alloc.h"
#include "core/base/str.h"
#include "core/exec.h"
#include "core/registry.h"
#include "tests/test.h"

#include <stdint.h>
#include <stdlib.h>

extern const lm_node_def lm_node_primitive_int, lm_node_primitive_float, lm_node_primitive_string,
    lm_node_primitive_string_multiline, lm_node_primitive_boolean, lm_node_int_math,
    lm_node_float_math, lm_node_string_format, lm_node_string_concatenate;

/* Runs def on `in` (taking the references) and returns its status; *out gets output 0. */
static lm_status run(const lm_node_def *def, lm_value **in, size_t n_in, lm_value **out,
                     lm_error *err)
{
    lm_value *outs[4] = { 0 };
    lm_error_clear(err);
    lm_status st = lm_exec_run_node(def, NULL, in, outs, NULL, NULL, err);
    for (size_t i = 0; i < n_in; i++)
        lm_value_unref(in[i]);
    *out = outs[0];
    return st;
}

static lm_status int_math(int64_t a, int64_t b, const char *op, int64_t *res, lm_error *err)
{
    lm_value *in[] = { lm_value_int(a), lm_value_int(b), lm_value_string(op) }, *out;
    lm_status st = run(&lm_node_int_math, in, 3, &out, err);
    *res = st == LM_OK ? lm_value_as_int(out) : -12345;
    if (st == LM_OK && lm_value_type(out) != LM_TYPE_INT)
        *res = -54321;
    lm_value_unref(out);
    return st;
}

static int64_t int_ok(int64_t a, int64_t b, const char *op)
{
    lm_error err;
    int64_t res;
    CHECK_OK(int_math(a, b, op, &res, &err), &err);
    return res;
}

static lm_status float_math(double a, double b, const char *op, double *res, lm_error *err)
{
    lm_value *in[] = { lm_value_float(a), lm_value_float(b), lm_value_string(op) }, *out;
    lm_status st = run(&lm_node_float_math, in, 3, &out, err);
    *res = st == LM_OK && lm_value_type(out) == LM_TYPE_FLOAT ? lm_value_as_float(out) : -1e300;
    lm_value_unref(out);
    return st;
}

static double float_ok(double a, double b, const char *op)
{
    lm_error err;
    double res;
    CHECK_OK(float_math(a, b, op, &res, &err), &err);
    return res;
}

void test_nodes_util__descriptors_register(void)
{
    const lm_node_def *defs[] = { &lm_node_primitive_int,     &lm_node_primitive_float,
                                  &lm_node_primitive_string,  &lm_node_primitive_string_multiline,
                                  &lm_node_primitive_boolean, &lm_node_int_math,
                                  &lm_node_float_math,        &lm_node_string_format,
                                  &lm_node_string_concatenate };
    lm_registry *reg;
    lm_error err;
    REQUIRE_OK(lm_registry_new(&reg, &err), &err);
    for (size_t i = 0; i < LM_COUNTOF(defs); i++) {
        CHECK_OK(lm_registry_add(reg, defs[i], &err), &err);
        CHECK(defs[i]->category && strncmp(defs[i]->category, "utils/", 6) == 0);
        CHECK(defs[i]->description && defs[i]->description[0]);
        for (size_t k = 0; k < defs[i]->n_inputs; k++)
            CHECK(defs[i]->inputs[k].help && strlen(defs[i]->inputs[k].help) > 10);
    }
    CHECK_INT(lm_registry_count(reg), 9);
    CHECK(lm_registry_find(reg, "PrimitiveStringMultiline") != NULL);
    lm_registry_free(reg);
}

void test_nodes_util__primitives_pass_values_on(void)
{
    lm_error err;
    lm_value *in[1], *out;
    in[0] = lm_value_int(-42);
    REQUIRE_OK(run(&lm_node_primitive_int, in, 1, &out, &err), &err);
    CHECK_INT(lm_value_type(out), LM_TYPE_INT);
    CHECK_INT(lm_value_as_int(out), -42);
    lm_value_unref(out);
    in[0] = lm_value_float(0.25);
    REQUIRE_OK(run(&lm_node_primitive_float, in, 1, &out, &err), &err);
    CHECK_NEAR(lm_value_as_float(out), 0.25, 0);
    lm_value_unref(out);
    in[0] = lm_value_string("a cat");
    REQUIRE_OK(run(&lm_node_primitive_string, in, 1, &out, &err), &err);
    CHECK_STR(lm_value_as_string(out), "a cat");
    lm_value_unref(out);
    in[0] = lm_value_string("line 1\nline 2");
    REQUIRE_OK(run(&lm_node_primitive_string_multiline, in, 1, &out, &err), &err);
    CHECK_STR(lm_value_as_string(out), "line 1\nline 2");
    lm_value_unref(out);
    in[0] = lm_value_bool(true);
    REQUIRE_OK(run(&lm_node_primitive_boolean, in, 1, &out, &err), &err);
    CHECK_INT(lm_value_type(out), LM_TYPE_BOOLEAN);
    CHECK(lm_value_as_bool(out));
    lm_value_unref(out);
    CHECK(lm_node_primitive_int.inputs[0].flags & LM_INPUT_SEED);
    CHECK(lm_node_primitive_string_multiline.inputs[0].flags & LM_INPUT_MULTILINE);
}

void test_nodes_util__int_math_basic_ops(void)
{
    CHECK_INT(int_ok(2, 3, "add"), 5);
    CHECK_INT(int_ok(2, 3, "subtract"), -1);
    CHECK_INT(int_ok(-4, 3, "multiply"), -12);
    CHECK_INT(int_ok(2, 10, "power"), 1024);
    CHECK_INT(int_ok(-3, 3, "power"), -27);
    CHECK_INT(int_ok(0, 0, "power"), 1);
    CHECK_INT(int_ok(7, 0, "power"), 1);
    CHECK_INT(int_ok(-2, 63, "power"), INT64_MIN);
    CHECK_INT(int_ok(4, -9, "min"), -9);
    CHECK_INT(int_ok(4, -9, "max"), 4);
}

void test_nodes_util__int_math_floor_division(void)
{
    CHECK_INT(int_ok(7, 2, "divide"), 3);
    CHECK_INT(int_ok(-7, 2, "divide"), -4);
    CHECK_INT(int_ok(7, -2, "divide"), -4);
    CHECK_INT(int_ok(-7, -2, "divide"), 3);
    CHECK_INT(int_ok(-6, 2, "divide"), -3);
    CHECK_INT(int_ok(INT64_MIN, 2, "divide"), INT64_MIN / 2);
}

void test_nodes_util__int_math_modulo_sign_follows_divisor(void)
{
    CHECK_INT(int_ok(7, 3, "modulo"), 1);
    CHECK_INT(int_ok(-7, 3, "modulo"), 2);
    CHECK_INT(int_ok(7, -3, "modulo"), -2);
    CHECK_INT(int_ok(-7, -3, "modulo"), -1);
    CHECK_INT(int_ok(-6, 3, "modulo"), 0);
    CHECK_INT(int_ok(INT64_MIN, -1, "modulo"), 0);
}

void test_nodes_util__int_math_divide_by_zero_names_b(void)
{
    const char *ops[] = { "divide", "modulo" };
    for (size_t i = 0; i < 2; i++) {
        lm_error err;
        int64_t res;
        CHECK_INT(int_math(5, 0, ops[i], &res, &err), LM_EINVAL);
        CHECK_STR(err.input, "b");
        CHECK_STR(err.node_type, "IntMath");
        CHECK_STR(err.kind, "division_by_zero");
        char line[1024];
        lm_error_format(&err, line, sizeof(line));
        CHECK_CONTAINS(line, "(IntMath) input \"b\"");
        CHECK_CONTAINS(line, "by zero");
    }
}

void test_nodes_util__int_math_overflow_is_an_error(void)
{
    struct {
        int64_t a, b;
        const char *op;
    } cases[] = {
        { INT64_MAX, 1, "add" },
        { INT64_MIN, 1, "subtract" },
        { INT64_MAX / 2 + 1, 2, "multiply" },
        { INT64_MIN, -1, "divide" },
        { 2, 63, "power" },
        { 3, 40, "power" },
        { -3, 41, "power" },
    };
    for (size_t i = 0; i < LM_COUNTOF(cases); i++) {
        lm_error err;
        int64_t res;
        CHECK_INT(int_math(cases[i].a, cases[i].b, cases[i].op, &res, &err), LM_ERANGE);
        CHECK_STR(err.kind, "integer_overflow");
        CHECK_CONTAINS(err.msg, "64-bit");
    }
    CHECK_INT(int_ok(2, 62, "power"), (int64_t)1 << 62);
    CHECK_INT(int_ok(INT64_MAX, -1, "add"), INT64_MAX - 1);
}

void test_nodes_util__int_math_rejects_negative_exponent_and_bad_op(void)
{
    lm_error err;
    int64_t res;
    CHECK_INT(int_math(2, -1, "power", &res, &err), LM_ERANGE);
    CHECK_STR(err.input, "b");
    CHECK_INT(int_math(2, 1, "xor", &res, &err), LM_EINVAL);
    CHECK_STR(err.input, "op");
    CHECK_CONTAINS(err.msg, "xor");
}

void test_nodes_util__float_math_ops(void)
{
    CHECK_NEAR(float_ok(0.5, 0.25, "add"), 0.75, 0);
    CHECK_NEAR(float_ok(0.5, 0.25, "subtract"), 0.25, 0);
    CHECK_NEAR(float_ok(1.5, -2, "multiply"), -3, 0);
    CHECK_NEAR(float_ok(-7, 2, "divide"), -3.5, 0);
    CHECK_NEAR(float_ok(-7, 3, "modulo"), 2, 1e-12);
    CHECK_NEAR(float_ok(7.5, -2, "modulo"), -0.5, 1e-12);
    CHECK_NEAR(float_ok(7.5, 2, "modulo"), 1.5, 1e-12);
    CHECK_NEAR(float_ok(2, 0.5, "power"), sqrt(2.0), 1e-15);
    CHECK_NEAR(float_ok(2, -1, "power"), 0.5, 0);
    CHECK_NEAR(float_ok(-1.5, 3, "min"), -1.5, 0);
    CHECK_NEAR(float_ok(-1.5, 3, "max"), 3, 0);
}

void test_nodes_util__float_math_errors(void)
{
    lm_error err;
    double res;
    CHECK_INT(float_math(1, 0, "divide", &res, &err), LM_EINVAL);
    CHECK_STR(err.input, "b");
    CHECK_STR(err.node_type, "FloatMath");
    CHECK_INT(float_math(1, 0, "modulo", &res, &err), LM_EINVAL);
    CHECK_STR(err.input, "b");
    CHECK_INT(float_math(-8, 0.5, "power", &res, &err), LM_ERANGE);
    CHECK_STR(err.kind, "value_not_finite");
    CHECK_INT(float_math(1e308, 10, "multiply", &res, &err), LM_ERANGE);
    CHECK_CONTAINS(err.msg, "not a finite number");
    CHECK_INT(float_math(0, -1, "power", &res, &err), LM_ERANGE);
    CHECK_INT(float_math(1, 2, "floor", &res, &err), LM_EINVAL);
    CHECK_STR(err.input, "op");
}

/* Runs StringFormat with `fmt` and up to four arguments (NULL = absent). */
static lm_status format(const char *fmt, lm_value *a, lm_value *b, lm_value *c, lm_value *d,
                        char *res, size_t size, lm_error *err)
{
    lm_value *in[] = { lm_value_string(fmt), a, b, c, d }, *out;
    lm_status st = run(&lm_node_string_format, in, 5, &out, err);
    lm_strlcpy(res, st == LM_OK ? lm_value_as_string(out) : "<error>", size);
    lm_value_unref(out);
    return st;
}

void test_nodes_util__string_format_substitutes_every_scalar_type(void)
{
    char res[256];
    lm_error err;
    CHECK_OK(format("{a}, {b}, {c}, {d}", lm_value_int(-12), lm_value_float(0.5),
                    lm_value_string("a cat"), lm_value_bool(true), res, sizeof(res), &err),
             &err);
    CHECK_STR(res, "-12, 0.5, a cat, true");
    CHECK_OK(format("seed {a}{a} {b}", lm_value_int(7), lm_value_float(2), NULL, NULL, res,
                    sizeof(res), &err),
             &err);
    CHECK_STR(res, "seed 77 2.0");
    CHECK_OK(format("no placeholders", NULL, NULL, NULL, NULL, res, sizeof(res), &err), &err);
    CHECK_STR(res, "no placeholders");
    CHECK_OK(format("", NULL, NULL, NULL, NULL, res, sizeof(res), &err), &err);
    CHECK_STR(res, "");
    CHECK_OK(format("{d}", NULL, NULL, NULL, lm_value_bool(false), res, sizeof(res), &err), &err);
    CHECK_STR(res, "false");
}

void test_nodes_util__string_format_escapes_braces(void)
{
    char res[256];
    lm_error err;
    CHECK_OK(
        format("{{a}} = {a}; }}{{", lm_value_string("x"), NULL, NULL, NULL, res, sizeof(res), &err),
        &err);
    CHECK_STR(res, "{a} = x; }{");
    CHECK_OK(format("{{{a}}}", lm_value_int(1), NULL, NULL, NULL, res, sizeof(res), &err), &err);
    CHECK_STR(res, "{1}");
}

void test_nodes_util__string_format_errors_name_the_problem(void)
{
    char res[256];
    lm_error err;
    CHECK_INT(format("a {e} b", lm_value_int(1), NULL, NULL, NULL, res, sizeof(res), &err),
              LM_EINVAL);
    CHECK_STR(err.input, "format");
    CHECK_CONTAINS(err.msg, "unknown placeholder {e}");
    CHECK_INT(format("{a:.2f}", lm_value_int(1), NULL, NULL, NULL, res, sizeof(res), &err),
              LM_EINVAL);
    CHECK_CONTAINS(err.msg, "{a:.2f}");
    CHECK_INT(format("x {a", lm_value_int(1), NULL, NULL, NULL, res, sizeof(res), &err), LM_EINVAL);
    CHECK_CONTAINS(err.msg, "not closed");
    CHECK_INT(format("x } y", NULL, NULL, NULL, NULL, res, sizeof(res), &err), LM_EINVAL);
    CHECK_CONTAINS(err.hint, "}}");
    CHECK_INT(format("{a} {c}", lm_value_int(1), NULL, NULL, NULL, res, sizeof(res), &err),
              LM_EINVAL);
    CHECK_STR(err.input, "c");
    CHECK_STR(err.node_type, "StringFormat");
}

static void no_free(void *p)
{
    LM_UNUSED(p);
}

void test_nodes_util__string_format_rejects_non_scalars(void)
{
    static int dummy;
    char res[256];
    lm_error err;
    lm_value *model = lm_value_object(LM_TYPE_MODEL, &dummy, no_free, 0);
    REQUIRE(model != NULL);
    CHECK_INT(format("{b}", NULL, model, NULL, NULL, res, sizeof(res), &err), LM_ETYPE);
    CHECK_STR(err.input, "b");
    CHECK_CONTAINS(err.msg, "MODEL");
}

void test_nodes_util__string_format_out_of_memory(void)
{
    /* Walk every allocation of a run; each failure is a clean LM_ENOMEM (ASan: no leak). */
    for (long n = 0; n < 50; n++) {
        lm_value *in[] = { lm_value_string("{a} and {b}"), lm_value_string("x"), lm_value_int(3),
                           NULL, NULL },
                 *out[1] = { 0 };
        lm_error err;
        lm_alloc_fail_after(n);
        lm_status st = lm_exec_run_node(&lm_node_string_format, NULL, in, out, NULL, NULL, &err);
        long failures = lm_alloc_failures();
        lm_alloc_fail_after(-1);
        for (size_t i = 0; i < 3; i++)
            lm_value_unref(in[i]);
        if (st == LM_OK) {
            CHECK_STR(lm_value_as_string(out[0]), "x and 3");
            lm_value_unref(out[0]);
            CHECK_INT(failures, 0);
            CHECK(n > 0); /* the walk did go through failing allocations */
            return;
        }
        CHECK_INT(st, LM_ENOMEM);
        CHECK(out[0] == NULL);
    }
    CHECK(!"StringFormat never succeeded within 50 allocations");
}

void test_nodes_util__string_concatenate(void)
{
    lm_error err;
    lm_value *in[3], *out;
    in[0] = lm_value_string("a cat");
    in[1] = lm_value_string("a hat");
    in[2] = lm_value_string(", ");
    REQUIRE_OK(run(&lm_node_string_concatenate, in, 3, &out, &err), &err);
    CHECK_STR(lm_value_as_string(out), "a cat, a hat");
    lm_value_unref(out);
    in[0] = lm_value_string("ab");
    in[1] = lm_value_string("cd");
    in[2] = lm_value_string("");
    REQUIRE_OK(run(&lm_node_string_concatenate, in, 3, &out, &err), &err);
    CHECK_STR(lm_value_as_string(out), "abcd");
    lm_value_unref(out);
    CHECK_STR(lm_node_string_concatenate.inputs[2].name, "delimiter");
}

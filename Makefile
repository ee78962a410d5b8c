# Loom — one Makefile.  make | make test | make check | make bench | make demo | make deps
#
# Sources are found by directory, so adding a .c file needs no edit here. Everything but
# daemon/main.c goes into build/libloom.a; the `loom` program and the test runner link it.
# CUDA: when nvcc is on the PATH the .cu files under core/tensor/cuda/ are compiled and
# linked; otherwise core/tensor/cuda_none.c provides the same entry point.

CC       ?= cc
NVCC     ?= nvcc
BUILD    ?= build
SHARED   ?= $(abspath ../shared)
export LOOM_SHARED ?= $(SHARED)

PKGS     := yaml-0.1 libcjson libpng libjpeg libwebp zlib lua5.4
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wold-style-definition -Wundef -Wwrite-strings -Wformat=2 -Wdouble-promotion -Wvla \
        -Wimplicit-fallthrough
OPT      ?= -O2 -g
CPPFLAGS += -I. -D_GNU_SOURCE $(PKG_CFLAGS) -I/usr/include/x86_64-linux-gnu/openblas-pthread
CFLAGS   += -std=c11 $(OPT) $(WARN) -pthread -fno-strict-aliasing
LDLIBS   += $(PKG_LIBS) -lopenblas -lxxhash -lm -pthread
# Parsers, where a silent truncation is a security bug.
STRICT_DIRS := core/io daemon

HAVE_NVCC := $(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1)
CUDA_SRCS := $(wildcard core/tensor/cuda/*.cu)
ifeq ($(HAVE_NVCC)$(NO_CUDA)$(if $(CUDA_SRCS),y),1y)
  CUDA_HOME  ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC))))
  CPPFLAGS   += -DLM_HAVE_CUDA=1
  CUDA_OBJS  := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CUDA_SRCS))
  CUDA_C     := $(wildcard core/tensor/cuda/*.c)
  # -lstdc++: nvcc's host stubs for template kernels use C++ runtime helpers (static-init
  # guards, unwinding); the programs are linked by the C compiler.
  LDLIBS     += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublasLt -lcublas \
                -lstdc++
  NVCCFLAGS  ?= -O2 -std=c++17 -I. --compiler-options -Wall,-Werror,-fPIC \
                -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
                -gencode arch=compute_90,code=compute_90
else
  CUDA_OBJS  :=
  CUDA_C     := core/tensor/cuda_none.c
endif

SRC_DIRS := core/base core core/io core/tensor core/tensor/cpu nodes nodes/image nodes/util \
            nodes/sd3 nodes/loaders nodes/sampling nodes/latent nodes/conditioning scripting daemon
LIB_SRCS := $(filter-out daemon/main.c core/tensor/cuda_none.c, \
              $(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c))) $(CUDA_C)
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) $(CUDA_OBJS)
LIB      := $(BUILD)/libloom.a
LOOM     := $(BUILD)/loom

TEST_SRCS := tests/run.c $(wildcard tests/*/test_*.c) $(wildcard tests/tensor/ref/*.c)
TEST_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(TEST_SRCS))
TEST_RUN  := $(BUILD)/tests/run
BENCH_SRCS := $(wildcard tests/bench/*.c) $(wildcard tests/tensor/ref/*.c)
BENCH_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(BENCH_SRCS))

.PHONY: .deps-ok all test check bench deps demo test-cuda fuzz format format-check headers layers clean
all: $(LOOM)

# `make V=1` shows whole command lines.
Q := $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(if $(filter $(addsuffix /%,$(STRICT_DIRS)),$<),-Wconversion) \
	    -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  NVCC    $<")
	$(Q)$(NVCC) $(NVCCFLAGS) -I. -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(if $(Q),@echo "  AR      $@")
	$(Q)$(AR) rcs $@ $^

$(LOOM): $(BUILD)/obj/daemon/main.o $(LIB)
	$(if $(Q),@echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# The test list is generated from the test functions' names (tests/list.sh).
$(BUILD)/tests/list.h: $(TEST_SRCS) tests/list.sh
	@mkdir -p $(dir $@)
	$(Q)sh tests/list.sh $(wildcard tests/*/test_*.c) > $@.tmp && mv $@.tmp $@
CC_IS_CLANG := $(shell $(CC) --version 2>/dev/null | grep -q clang && echo 1)
$(BUILD)/obj/tests/%.o: CFLAGS += -Wno-missing-prototypes $(if $(CC_IS_CLANG),,-Wno-format-truncation)
$(BUILD)/obj/tests/run.o: $(BUILD)/tests/list.h
$(BUILD)/obj/tests/run.o: CPPFLAGS += -I$(BUILD)/tests

$(TEST_RUN): $(TEST_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

deps:
	@sh tools/deps.sh

# `test` and `demo` install missing packages first (as root) or say what to run.
.deps-ok:
	@sh tools/deps.sh --check >/dev/null 2>&1 || sh tools/deps.sh

# The goldens first, so the runner's "N passed, N failed" stays the last line; either failing
# fails the target.
test: .deps-ok
	@$(MAKE) --no-print-directory $(LOOM) $(TEST_RUN)
	$(LOOM) golden $(LOOM_SHARED)/golden; golden=$$?; \
	    LOOM_BIN=$(abspath $(LOOM)) $(TEST_RUN) $(TESTS) && exit $$golden

demo: .deps-ok
	@$(MAKE) --no-print-directory $(LOOM)
	$(LOOM) run workflows/demo.yaml --out output

# ASan + UBSan build of everything, then the tests, fuzzers, header and layer checks.
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
check: .deps-ok headers layers format-check
	$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g $(SAN)" LDFLAGS="$(SAN)" \
	    NO_CUDA=1 build/asan/loom build/asan/tests/run
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    LOOM_BIN=$(abspath build/asan/loom) build/asan/tests/run $(TESTS)
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(or $(FUZZ_SECONDS),20)

# libFuzzer targets (clang): tests/fuzz/fuzz_*.c, each run for FUZZ_SECONDS on its corpus.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 30
fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	    n=$$(basename $$f); mkdir -p build/fuzz/corpus-$$n; \
	    echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
	        -print_final_stats=0 build/fuzz/corpus-$$n tests/fuzz/corpus/$$n \
	        2> build/fuzz/$$n.log || { tail -50 build/fuzz/$$n.log; exit 1; }; \
	    grep -E '^#[0-9]+.*DONE' build/fuzz/$$n.log | tail -1; \
	done
build/fuzz/%: tests/fuzz/%.c
	$(MAKE) --no-print-directory CC=clang BUILD=build/fuzzlib NO_CUDA=1 \
	    OPT="-O1 -g -fsanitize=address,undefined,fuzzer-no-link" build/fuzzlib/libloom.a
	@mkdir -p build/fuzz
	clang $(CPPFLAGS) -std=c11 -O1 -g -fsanitize=address,undefined,fuzzer $< \
	    build/fuzzlib/libloom.a -o $@ $(LDLIBS)

# Each header compiles on its own; no lower layer includes a higher one.
HEADERS := $(filter-out %.cuh,$(foreach d,$(SRC_DIRS) core/tensor/cuda,$(wildcard $(d)/*.h)))
headers:
	@for h in $(HEADERS); do \
	    echo "#include \"$$h\"" | $(CC) $(CPPFLAGS) -std=c11 $(WARN) -fsyntax-only -x c - \
	        || { echo "headers: $$h does not compile alone"; exit 1; }; \
	done; echo "headers: $(words $(HEADERS)) self-contained"
layers:
	@sh tools/layers.sh

bench: $(LOOM)
	$(MAKE) --no-print-directory $(BUILD)/bench $(BUILD)/make_sd3_random
	$(BUILD)/bench

$(BUILD)/bench: $(BENCH_OBJS) $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# Random full-size SD3 Medium checkpoint for the bench's SD3 section (tools/make_sd3_random.c).
$(BUILD)/make_sd3_random: $(BUILD)/obj/tools/make_sd3_random.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

# The CUDA backend against the CPU backend, op by op; needs a GPU.
test-cuda: $(LOOM) $(TEST_RUN)
	@if nvidia-smi -L >/dev/null 2>&1; then \
	    LOOM_BIN=$(abspath $(LOOM)) $(TEST_RUN) -s cuda; \
	else echo "test-cuda: skipped: no NVIDIA GPU here (nvidia-smi -L found none)"; fi

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' '*.cu' '*.cuh')
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format: clean"

clean:
	rm -rf build

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d)

#!/bin/sh
# tests/list.sh — writes the test table for tests/run.c from the test functions' names:
# every "void test_<area>_<module>__<case>(void)" at the start of a line in the given files.
set -eu
names=$(grep -hoE '^void test_[a-z0-9_]+__[a-z0-9_]+\(void\)' "$@" | sed -E 's/^void ([a-z0-9_]+)\(void\)/\1/' || true)
for n in $names; do echo "void $n(void);"; done
echo "static const test_entry test_table[] = {"
for n in $names; do echo "    { \"$n\", $n },"; done
echo "    { 0, 0 }"
echo "};"

#include "harness.h"
int main(int argc, char** argv) { return emu_test::run_all(argc, argv); }

// Emulated device: see native/cuda/emu/README.md.
#pragma once
#include "../emu_half.h"

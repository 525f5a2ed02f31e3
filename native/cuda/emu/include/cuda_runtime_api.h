// Emulated device: see native/cuda/emu/README.md.
#pragma once
#include "../emu_device.h"
#include "../emu_ptx.h"
#include "../emu_runtime.h"

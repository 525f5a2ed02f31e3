# The emulated CUDA device (SPARSIFY_CUDA=EMU, `node scripts/build-native.mjs --cuda-emu`): the
# same native/cuda/*.cu sources and CUDA bindings as the CUDA variant, compiled as C++ by the host
# compiler against native/cuda/emu (no nvcc, no GPU). A test build: see native/cuda/emu/README.md.
file(GLOB SPARSIFY_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/../*.cu)
file(GLOB SPARSIFY_CUDA_BINDING_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/../../bindings/cuda/*.cpp)
file(GLOB SPARSIFY_EMU_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
set_source_files_properties(${SPARSIFY_CUDA_KERNEL_SOURCES} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-xc++")
target_sources(${PROJECT_NAME} PRIVATE ${SPARSIFY_CUDA_KERNEL_SOURCES} ${SPARSIFY_CUDA_BINDING_SOURCES} ${SPARSIFY_EMU_SOURCES})
# The emulator's cuda_runtime.h, cuda_bf16.h, cuda_fp16.h and cub/ shadow any CUDA toolkit.
target_include_directories(${PROJECT_NAME} BEFORE PRIVATE ${CMAKE_CURRENT_LIST_DIR}/include)
target_compile_definitions(${PROJECT_NAME} PRIVATE SPARSIFY_HAVE_CUDA=1 SPARSIFY_CUDA_EMU=1)
# The kernels' __fadd_rn & co. must not be contracted into FMAs behind their back.
target_compile_options(${PROJECT_NAME} PRIVATE -ffp-contract=off -Wno-unknown-pragmas)
message(STATUS "sparsify: emulated CUDA device ON (host compiler, no GPU)")

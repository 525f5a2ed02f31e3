# CUDA backend, included by the root CMakeLists.txt when SPARSIFY_CUDA != OFF and nvcc is found.
# Compiles native/cuda/*.cu (kernels, runtime glue) and native/bindings/cuda/*.cpp (N-API bindings
# of the cuda* functions) into the same addon target, with SPARSIFY_HAVE_CUDA defined. cudart is
# linked statically, so the .node needs only the NVIDIA driver (libcuda.so, loaded by cudart at
# run time) and works (reporting "no device") on machines without one.

# Explicit architectures ("native" fails without a GPU). CUDA 13 supports sm_75..sm_121.
#   80/86/89: Ampere/Ada SASS (mma.sync path); 90a: Hopper SASS (arch-specific features);
#   90-virtual: PTX, JIT-compiled by the driver on newer GPUs (Blackwell and later).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90a-real;90-virtual")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

# The root file's compile options (-fno-math-errno, -Wall, ...) are host-compiler flags that nvcc
# rejects: restrict the ones already set to C++ sources.
get_target_property(_sparsify_opts ${PROJECT_NAME} COMPILE_OPTIONS)
if(_sparsify_opts)
  set(_sparsify_cxx_opts "")
  foreach(_o IN LISTS _sparsify_opts)
    list(APPEND _sparsify_cxx_opts "$<$<COMPILE_LANGUAGE:CXX>:${_o}>")
  endforeach()
  set_property(TARGET ${PROJECT_NAME} PROPERTY COMPILE_OPTIONS "${_sparsify_cxx_opts}")
endif()

file(GLOB SPARSIFY_CUDA_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_CURRENT_LIST_DIR}/*.cu ${CMAKE_CURRENT_LIST_DIR}/../bindings/cuda/*.cpp)
target_sources(${PROJECT_NAME} PRIVATE ${SPARSIFY_CUDA_SOURCES})
target_include_directories(${PROJECT_NAME} PRIVATE ${CMAKE_CUDA_TOOLKIT_INCLUDE_DIRECTORIES})
target_compile_definitions(${PROJECT_NAME} PRIVATE SPARSIFY_HAVE_CUDA=1)
# The target exists before enable_language(CUDA), so it did not pick up the default archs.
set_target_properties(${PROJECT_NAME} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
                      CUDA_RUNTIME_LIBRARY Static CUDA_SEPARABLE_COMPILATION OFF)
# The root file's -Wall etc. are C++ flags; give nvcc its own. -Werror=all-warnings keeps every
# listed arch warning-free; the host compiler sees -Wall through -Xcompiler.
target_compile_options(${PROJECT_NAME} PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr -Xcompiler=-fvisibility=hidden,-Wall,-Wno-unused-function -Werror=all-warnings>)
# cudart_static needs libdl/librt/pthread on older glibc; all are in libc on glibc >= 2.34.
target_link_libraries(${PROJECT_NAME} PRIVATE ${CMAKE_DL_LIBS})
message(STATUS "sparsify: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, archs ${CMAKE_CUDA_ARCHITECTURES})")

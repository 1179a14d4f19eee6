# Warnings for every llmlab target; -Werror when LLMLAB_WERROR is on (CI).
add_library(llmlab_warnings INTERFACE)
target_compile_options(llmlab_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${LLMLAB_WERROR}>>:-Werror>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${LLMLAB_WERROR}>>:-Werror=all-warnings>)

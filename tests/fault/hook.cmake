# For a tree whose top-level CMakeLists.txt does not add tests/fault (yet):
#   cmake -DCMAKE_PROJECT_INCLUDE=<src>/tests/fault/hook.cmake ...
# includes it at the end of the top level, after the daemon's targets exist
# (a deferred call may not add a subdirectory; its targets land in the top
# build directory instead of tests/fault/).
# scripts/fault.sh configures its build directories this way; with
# add_subdirectory(tests/fault) in the top level it does nothing.
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _iovad_fault_hook)
function(_iovad_fault_hook)
  if(NOT TARGET iovad-failinj AND TARGET iovad AND TARGET iovad_client_static)
    include(${CMAKE_SOURCE_DIR}/tests/fault/CMakeLists.txt)
  endif()
endfunction()

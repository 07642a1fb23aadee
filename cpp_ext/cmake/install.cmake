# Install rules of the C API: headers, libedgetag.{a,so}, a CMake package
# (find_package(edgetag) -> edgetag::edgetag, edgetag::edgetag_static) and a
# pkg-config file (edgetag.pc). Both package files locate the install from
# their own place, so `cmake --install build --prefix P` can pick any P.
include(CMakePackageConfigHelpers)

set(EDGETAG_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/edgetag)

install(TARGETS edgetag_shared edgetag_static EXPORT edgetagTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# c_api.h for C; the C++ headers of the core for C++ programs linking libedgetag.a.
install(DIRECTORY include/edgetag DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(EXPORT edgetagTargets NAMESPACE edgetag:: DESTINATION ${EDGETAG_CMAKE_DIR})

configure_package_config_file(cmake/edgetagConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/edgetagConfig.cmake
  INSTALL_DESTINATION ${EDGETAG_CMAKE_DIR})
# 0.x: a new minor version may change the API, so only the same X.Y matches.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/edgetagConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/edgetagConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/edgetagConfigVersion.cmake
  DESTINATION ${EDGETAG_CMAKE_DIR})

# pkg-config: the prefix relative to the .pc file (${pcfiledir}), as the install prefix is chosen at install time.
set(EDGETAG_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${EDGETAG_PC_DIR}")
  set(EDGETAG_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _edgetag_pc_up "/prefix/${EDGETAG_PC_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" _edgetag_pc_up "${_edgetag_pc_up}")
  set(EDGETAG_PC_PREFIX "\${pcfiledir}/${_edgetag_pc_up}")
endif()
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(EDGETAG_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(EDGETAG_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
# What linking libedgetag.a statically needs besides itself: the C++ runtime this compiler
# links implicitly (libstdc++ or libc++), the maths library and threads.
set(EDGETAG_PC_LIBS_PRIVATE "")
foreach(lib ${CMAKE_CXX_IMPLICIT_LINK_LIBRARIES})
  if(NOT lib MATCHES "^(c|gcc|gcc_s|gcc_eh)$" AND NOT IS_ABSOLUTE "${lib}")
    string(APPEND EDGETAG_PC_LIBS_PRIVATE " -l${lib}")
  endif()
endforeach()
if(CMAKE_THREAD_LIBS_INIT)
  string(APPEND EDGETAG_PC_LIBS_PRIVATE " ${CMAKE_THREAD_LIBS_INIT}")
endif()
string(STRIP "${EDGETAG_PC_LIBS_PRIVATE}" EDGETAG_PC_LIBS_PRIVATE)
configure_file(cmake/edgetag.pc.in ${CMAKE_CURRENT_BINARY_DIR}/edgetag.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/edgetag.pc DESTINATION ${EDGETAG_PC_DIR})

# `cmake --install`: the CMake package (find_package(spool) -> spool::spool) and spool.pc.
# The libraries and headers have their install rules in engine/CMakeLists.txt, the tools in
# tools/CMakeLists.txt. Included from the top-level CMakeLists.txt.
#
# Components: spool_runtime (the shared library), spool_development (static library,
# headers, CMake package, pkg-config file); the tools have no component of their own.

include(CMakePackageConfigHelpers)

set(SPOOL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/spool)

install(EXPORT spoolTargets NAMESPACE spool:: DESTINATION ${SPOOL_CMAKE_DIR}
  FILE spoolTargets.cmake COMPONENT spool_development)

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/spoolConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/spoolConfig.cmake
  INSTALL_DESTINATION ${SPOOL_CMAKE_DIR})
# 0.x: a minor version may break the API.
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/spoolConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/spoolConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/spoolConfigVersion.cmake
  DESTINATION ${SPOOL_CMAKE_DIR} COMPONENT spool_development)

# spool.pc is relocatable: its prefix is found from its own place (${pcfiledir}), so a tree
# installed with `cmake --install --prefix P` (or copied elsewhere) works as it lies.
set(SPOOL_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(SPOOL_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(SPOOL_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(SPOOL_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH SPOOL_PC_UP "/prefix/${SPOOL_PC_DIR}" "/prefix")
  string(REGEX REPLACE "/$" "" SPOOL_PC_UP "${SPOOL_PC_UP}")
  set(SPOOL_PC_PREFIX "\${pcfiledir}/${SPOOL_PC_UP}")
  set(SPOOL_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(SPOOL_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/spool.pc.in ${CMAKE_CURRENT_BINARY_DIR}/spool.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/spool.pc DESTINATION ${SPOOL_PC_DIR}
  COMPONENT spool_development)

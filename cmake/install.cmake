# What `cmake --install` puts where, and the Debian package CPack makes of it
# (docs/install.md). Paths are relative to the install prefix (/usr/local
# by default, /usr in the package) except the config file, which lives in
# /etc whatever the prefix: the binary reads /etc/fortmesh/fortmesh.conf.
include(GNUInstallDirs)
# `cmake --install` and cpack install what is built; they do not build the
# whole tree (every test) first. Build `fortmesh` before.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS fortmesh RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The unit names the binary where this install puts it: the prefix is known
# only at install time (CPack installs with its own).
install(CODE "
  set(FM_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  configure_file(\"${CMAKE_SOURCE_DIR}/dist/fortmesh.service.in\" \"${CMAKE_BINARY_DIR}/dist/fortmesh.service\" @ONLY)
")
install(FILES ${CMAKE_BINARY_DIR}/dist/fortmesh.service DESTINATION lib/systemd/system)
install(FILES dist/fortmesh.sysusers DESTINATION lib/sysusers.d RENAME fortmesh.conf)

set(FM_VERSION ${PROJECT_VERSION})
foreach(page fortmesh.8 fortmesh.conf.5)
  configure_file(dist/man/${page} ${CMAKE_BINARY_DIR}/dist/man/${page} @ONLY)
  string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${page})
  install(FILES ${CMAKE_BINARY_DIR}/dist/man/${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()

install(FILES dist/completion/fortmesh.bash DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME fortmesh)
install(FILES dist/completion/_fortmesh DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES README.md docs/install.md docs/cli.md docs/endpoints.md docs/wireguard.md docs/guard.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES dist/fortmesh.conf DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME fortmesh.conf.example)

# The example config: in the package a conffile dpkg takes care of; by
# `cmake --install` only where there is none yet (an edited one is kept).
# file(INSTALL) puts $DESTDIR before an absolute destination itself.
set(FORTMESH_CONFIG_DIR "/etc/fortmesh" CACHE PATH "where fortmesh.conf is installed")
install(CODE "
  if(DEFINED ENV{DESTDIR} OR NOT EXISTS \"${FORTMESH_CONFIG_DIR}/fortmesh.conf\")
    file(INSTALL \"${CMAKE_SOURCE_DIR}/dist/fortmesh.conf\" DESTINATION \"${FORTMESH_CONFIG_DIR}\"
         FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  else()
    message(STATUS \"Kept: ${FORTMESH_CONFIG_DIR}/fortmesh.conf (the example is in the docs)\")
  endif()
")

# ---- The Debian package: cpack -G DEB in the build directory -------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME fortmesh)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "fortmesh maintainers <fortmesh@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "node daemon and admin tool of a self-governing WireGuard mesh")
set(CPACK_PACKAGE_DESCRIPTION "Every node derives its IPv6 overlay address from its key; membership is a CRDT of
signed operations that admins create and every node replicates. fortmesh run keeps the
WireGuard interface's peers equal to the org's active members, in the kernel or through
wireguard-go.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The shared libraries the binary links (dpkg-shlibdeps), and wireguard-go
# for the userspace backend; nothing the tests use.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "wireguard-go")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "wireguard-tools")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/dist/debian/postinst ${CMAKE_SOURCE_DIR}/dist/debian/prerm
    ${CMAKE_SOURCE_DIR}/dist/debian/postrm ${CMAKE_SOURCE_DIR}/dist/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_SOURCE_IGNORE_FILES "/build.*/;/\\\\.git/")
include(CPack)

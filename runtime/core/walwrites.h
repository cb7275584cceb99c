/* A VFS over SQLite's default one that writes each commit's WAL frames with one system call
 * instead of two per frame (walwrites.c says when it writes what it gathered). Made the
 * default VFS, so that every connection of the process uses it. */
#ifndef CHOREO_WALWRITES_H
#define CHOREO_WALWRITES_H

/* Once per process; later calls do nothing. */
void choreo_walwrites_register(void);

#endif

/* Forced into the kernel's VFIO selftests by lab/kernel.sh, only for a tree
 * that calls calloc_assert() without defining it (Debian's 7.2.13): calloc
 * that stops the program when the allocation fails, as the tree's other
 * *_assert helpers stop it when their call fails. */
#include <stdio.h>
#include <stdlib.h>

static inline void *calloc_assert(size_t count, size_t size)
{
	void *memory = calloc(count, size);

	if (!memory) {
		fprintf(stderr, "calloc(%zu, %zu) failed\n", count, size);
		exit(1);
	}
	return memory;
}

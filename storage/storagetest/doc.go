// Package storagetest is the conformance suite of storage.Backend: the
// behaviour every snappea database must have, written once against the
// interface and run against each backend from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, openEmpty, reopenNewer)
//	}
//
// It holds nothing specific to one database.
package storagetest

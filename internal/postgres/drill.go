package postgres

// DrillDatabaseName is the scratch database a coop's restore drills
// restore into: the coop's database name and "__drill", cut as
// AppDatabaseName cuts. The double '_' keeps it apart from every app's
// database of the coop: an app's name starts with a letter or digit, so
// no app, not even one named "drill", can have this name.
func DrillDatabaseName(coopDatabase string) string {
	return fitIdentifier(coopDatabase + "__drill")
}

from codecdoctor.cli import entry

entry()

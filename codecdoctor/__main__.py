from codecdoctor.cli import console

console()

from herald.cli import app

app(prog_name="herald")

"""Between the catalogue and the processes: start-up (bootup) and acting on what committed
transactions did (dispatch: storage deletes, webhook task messages)."""

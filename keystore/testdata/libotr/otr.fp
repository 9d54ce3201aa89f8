bob	alice@irc.example	prpl-irc	99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e	smp
bob	alice@irc.example	prpl-irc	7d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb02	
bob	libera	IRC	d7dee5ecf3fa01080f161d242b323940474e555c	smp
bob	libera	IRC	bbc2c9d0d7dee5ecf3fa01080f161d242b323940	
bob	we"ird\ nïck	IRC	151c232a31383f464d545b626970777e858c939a	smp
bob	we"ird\ nïck	IRC	f900070e151c232a31383f464d545b626970777e	
carol[m]	alice@irc.example	prpl-irc	b5bcc3cad1d8dfe6edf4fb020910171e252c333a	verified
carol[m]	libera	IRC	f3fa01080f161d242b323940474e555c636a7178	verified
carol[m]	we"ird\ nïck	IRC	31383f464d545b626970777e858c939aa1a8afb6	verified
dave	alice@irc.example	prpl-irc	99a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e	manual
dave	libera	IRC	d7dee5ecf3fa01080f161d242b323940474e555c	manual
dave	we"ird\ nïck	IRC	151c232a31383f464d545b626970777e858c939a	manual

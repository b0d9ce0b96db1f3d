const a = {b:1,c:2}
console.log( a.b+a.c )
